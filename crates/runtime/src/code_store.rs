//! Content-addressed code: BLAKE3 of a component's bytes maps to the bytes,
//! plus a precompiled artifact cached on disk, keyed by the hash and by the
//! engine's configuration.
//!
//! A mailbox moves as (code hash, state), so a receiving host must be able to
//! say whether it already has the code, take bytes that a peer claims have a
//! given hash (and refuse them if they do not), and turn a hash into a
//! compiled `Component` quickly. Compiling a component takes hundreds of
//! milliseconds; loading the cached artifact takes a few, which is what makes
//! waking a hibernated mailbox cheap.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::Engine;
use wasmtime::component::Component;

use dem_proto::ids::CodeHash;

pub use dem_proto::ids::CODE_BYTES_MAX;
/// Compiled components kept in memory; beyond this the least recently
/// inserted is dropped (it stays on disk).
pub const LOADED_COMPONENTS_MAX: usize = 256;

/// Errors of the code store.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Bytes offered for a hash do not hash to it.
    #[error("code hash mismatch: expected {expected}, the bytes hash to {actual}")]
    HashMismatch {
        expected: CodeHash,
        actual: CodeHash,
    },
    /// The component is bigger than `CODE_BYTES_MAX`.
    #[error("component is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    /// No code with this hash is stored here.
    #[error("no code with hash {0} on this host")]
    Missing(CodeHash),
    /// The bytes are not a valid component for this engine.
    #[error("component {hash} does not compile: {reason}")]
    Compile { hash: CodeHash, reason: String },
    /// Reading or writing the store's files failed.
    #[error("code store I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The host's code store.
pub struct CodeStore {
    dir: PathBuf,
    engine: Engine,
    /// Distinguishes artifacts compiled under different engine settings or
    /// wasmtime versions, which must never be loaded by another.
    engine_key: String,
    /// Compiled components, so a second mailbox with the same code is free.
    loaded: Mutex<Loaded>,
    /// One lock per hash being loaded or compiled: however many callers
    /// want a component at once (a burst of creates on a fresh host), one
    /// compiles it and the others wait and take the result.
    building: Mutex<HashMap<CodeHash, Arc<Mutex<()>>>>,
    /// Components compiled (not loaded from an artifact) since opening.
    compiles: AtomicU64,
}

#[derive(Default)]
struct Loaded {
    components: HashMap<CodeHash, Component>,
    order: Vec<CodeHash>,
}

impl CodeStore {
    pub fn open(dir: &Path, engine: Engine) -> Result<Self, CodeError> {
        fs::create_dir_all(dir).map_err(|source| CodeError::Io {
            path: dir.into(),
            source,
        })?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        Ok(Self {
            dir: dir.into(),
            engine,
            engine_key,
            loaded: Mutex::default(),
            building: Mutex::default(),
            compiles: AtomicU64::new(0),
        })
    }

    /// Stores `bytes` and returns their hash. Storing twice is a no-op.
    pub fn insert(&self, bytes: &[u8]) -> Result<CodeHash, CodeError> {
        if bytes.len() > CODE_BYTES_MAX {
            return Err(CodeError::TooLarge {
                size: bytes.len(),
                max: CODE_BYTES_MAX,
            });
        }
        let hash = CodeHash::of(bytes);
        let path = self.wasm_path(&hash);
        if !path.exists() {
            write_atomically(&path, bytes)?;
        }
        Ok(hash)
    }

    /// Stores bytes that a peer says have hash `expected`, refusing them
    /// when they do not.
    pub fn insert_expecting(&self, expected: &CodeHash, bytes: &[u8]) -> Result<(), CodeError> {
        let actual = CodeHash::of(bytes);
        if actual != *expected {
            return Err(CodeError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
        self.insert(bytes).map(|_| ())
    }

    /// Forgets code that turned out to be unusable (it failed to compile or
    /// type-check); best effort.
    pub fn remove(&self, hash: &CodeHash) {
        self.lock().components.remove(hash);
        let _ = fs::remove_file(self.wasm_path(hash));
        let _ = fs::remove_file(self.artifact_path(hash));
    }

    pub fn contains(&self, hash: &CodeHash) -> bool {
        self.wasm_path(hash).exists()
    }

    /// The component's bytes, checked against their hash on the way out so
    /// that a corrupted file is never served to a peer.
    pub fn bytes(&self, hash: &CodeHash) -> Result<Vec<u8>, CodeError> {
        let path = self.wasm_path(hash);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CodeError::Missing(*hash));
            }
            Err(source) => return Err(CodeError::Io { path, source }),
        };
        let actual = CodeHash::of(&bytes);
        if actual != *hash {
            return Err(CodeError::HashMismatch {
                expected: *hash,
                actual,
            });
        }
        Ok(bytes)
    }

    /// The compiled component: from memory, else from the precompiled
    /// artifact on disk, else compiled now and the artifact cached.
    /// Concurrent callers for one hash share one load or compile.
    pub fn component(&self, hash: &CodeHash) -> Result<Component, CodeError> {
        if let Some(c) = self.lock().components.get(hash) {
            return Ok(c.clone());
        }
        let gate = lock(&self.building).entry(*hash).or_default().clone();
        let built = {
            let _building = lock(&gate);
            let ready = self.lock().components.get(hash).cloned();
            match ready {
                Some(c) => Ok(c),
                None => self.load_or_compile(hash),
            }
        };
        lock(&self.building).remove(hash);
        built
    }

    /// How many components this store compiled (rather than loaded from a
    /// cached artifact) since it was opened.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    fn load_or_compile(&self, hash: &CodeHash) -> Result<Component, CodeError> {
        let component = match self.load_precompiled(hash)? {
            Some(c) => c,
            None => {
                self.compiles.fetch_add(1, Ordering::Relaxed);
                let bytes = self.bytes(hash)?;
                let artifact =
                    self.engine
                        .precompile_component(&bytes)
                        .map_err(|e| CodeError::Compile {
                            hash: *hash,
                            reason: format!("{e:#}"),
                        })?;
                let sealed = seal(&artifact);
                write_atomically(&self.artifact_path(hash), &sealed)?;
                self.deserialize(hash, &artifact)?
            }
        };
        let mut loaded = self.lock();
        if loaded.components.len() >= LOADED_COMPONENTS_MAX && !loaded.components.contains_key(hash)
        {
            let oldest = loaded.order.remove(0);
            loaded.components.remove(&oldest);
        }
        if loaded.components.insert(*hash, component.clone()).is_none() {
            loaded.order.push(*hash);
        }
        Ok(component)
    }

    /// Compiles `bytes` without storing anything; for the benchmark.
    pub fn compile_uncached(&self, bytes: &[u8]) -> Result<Vec<u8>, CodeError> {
        self.engine
            .precompile_component(bytes)
            .map_err(|e| CodeError::Compile {
                hash: CodeHash::of(bytes),
                reason: format!("{e:#}"),
            })
    }

    /// Loads the precompiled artifact from disk, bypassing the in-memory
    /// cache; `None` if there is none (or it is damaged, which is logged).
    pub fn load_precompiled(&self, hash: &CodeHash) -> Result<Option<Component>, CodeError> {
        let path = self.artifact_path(hash);
        let sealed = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CodeError::Io { path, source }),
        };
        match unseal(&sealed) {
            Some(artifact) => self.deserialize(hash, artifact).map(Some),
            None => {
                tracing::warn!(code = %hash.short(), "precompiled artifact is damaged; recompiling");
                Ok(None)
            }
        }
    }

    fn deserialize(&self, hash: &CodeHash, artifact: &[u8]) -> Result<Component, CodeError> {
        // SAFETY: `artifact` was produced by `precompile_component` of an
        // engine with the same compatibility hash (the file name carries it)
        // and its BLAKE3 seal was checked, so it is exactly the bytes this
        // host wrote; wasmtime additionally checks the header.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, artifact) };
        component.map_err(|e| CodeError::Compile {
            hash: *hash,
            reason: format!("{e:#}"),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        lock(&self.loaded)
    }

    fn wasm_path(&self, hash: &CodeHash) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    fn artifact_path(&self, hash: &CodeHash) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }
}

/// Prefixes an artifact with its BLAKE3 so a torn or corrupted file is
/// detected before wasmtime maps it as machine code.
fn seal(artifact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + artifact.len());
    out.extend_from_slice(blake3::hash(artifact).as_bytes());
    out.extend_from_slice(artifact);
    out
}

fn unseal(sealed: &[u8]) -> Option<&[u8]> {
    let (tag, artifact) = sealed.split_at_checked(32)?;
    (blake3::hash(artifact).as_bytes() == tag).then_some(artifact)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes via a temporary file and a rename, so readers see all or nothing.
/// The temporary name is unique per write, not only per process: two
/// threads writing the same file must not share it, or one renames the
/// other's half-written file away from under it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CodeError> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let io = |source| CodeError::Io {
        path: path.into(),
        source,
    };
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bytes_that_do_not_match_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path(), Engine::default()).unwrap();
        let claimed = CodeHash::of(b"the real code");
        let err = store
            .insert_expecting(&claimed, b"something else")
            .unwrap_err();
        assert!(matches!(err, CodeError::HashMismatch { .. }), "{err}");
        assert!(!store.contains(&claimed));
        store.insert_expecting(&claimed, b"the real code").unwrap();
        assert!(store.contains(&claimed));
        assert_eq!(store.bytes(&claimed).unwrap(), b"the real code");
    }

    #[test]
    fn missing_and_garbage_code_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path(), Engine::default()).unwrap();
        let absent = CodeHash::of(b"absent");
        assert!(matches!(
            store.component(&absent),
            Err(CodeError::Missing(_))
        ));
        let junk = store.insert(b"not a component").unwrap();
        assert!(matches!(
            store.component(&junk),
            Err(CodeError::Compile { .. })
        ));
    }

    #[test]
    fn concurrent_first_use_compiles_once_and_all_callers_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CodeStore::open(dir.path(), Engine::default()).unwrap());
        let code = store.insert(dem_builtin::PLUGINS[0].1).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.insert(dem_builtin::PLUGINS[0].1).unwrap();
                    store.component(&code).map(drop)
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(store.compiles(), 1);
        // A fresh store over the same directory loads the artifact.
        let again = CodeStore::open(dir.path(), Engine::default()).unwrap();
        again.component(&code).unwrap();
        assert_eq!(again.compiles(), 0);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_damaged_artifact_is_detected() {
        assert_eq!(unseal(&seal(b"abc")), Some(&b"abc"[..]));
        let mut sealed = seal(b"abc");
        sealed[33] ^= 1;
        assert_eq!(unseal(&sealed), None);
        assert_eq!(unseal(b"short"), None);
    }
}
