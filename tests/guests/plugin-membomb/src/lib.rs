//! Hostile filter for the host's sandbox tests: `filter` allocates and
//! touches memory without bound, so the host's memory limit must stop it.

wit_bindgen::generate!({ path: "../../../wit/wit", world: "filter" });

/// Size of each allocation.
const CHUNK_BYTES: usize = 1024 * 1024;

struct Plugin;

impl Guest for Plugin {
    fn filter(_mail: MailView, _config: String) -> Verdict {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Non-zero bytes, so every page is really written and not left
            // to lazily zeroed memory.
            hoard.push(std::hint::black_box(vec![0xA5; CHUNK_BYTES]));
            std::hint::black_box(&mut hoard);
        }
    }
}

export!(Plugin);
