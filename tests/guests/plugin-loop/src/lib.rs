//! Hostile filter for the host's sandbox tests: `filter` never returns, so
//! the host must cut it off (fuel or epoch interruption) instead of hanging.

wit_bindgen::generate!({ path: "../../../wit/wit", world: "filter" });

struct Plugin;

impl Guest for Plugin {
    fn filter(mail: MailView, _config: String) -> Verdict {
        // `black_box` keeps the optimiser from proving the loop useless.
        let mut counter = mail.body_size_bytes;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

export!(Plugin);
