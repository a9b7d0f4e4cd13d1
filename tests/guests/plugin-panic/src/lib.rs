//! Hostile filter for the host's sandbox tests: `filter` panics, which traps
//! the instance; the host must survive it and still deliver the mail.

wit_bindgen::generate!({ path: "../../../wit/wit", world: "filter" });

struct Plugin;

impl Guest for Plugin {
    fn filter(mail: MailView, _config: String) -> Verdict {
        panic!("test-plugin-panic: deliberate panic on mail {}", mail.id);
    }
}

export!(Plugin);
