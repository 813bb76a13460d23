//! Profile loading: any file contents give a Policy or a clean error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shellcage::profile::{LoadContext, load};

fuzz_target!(|data: &[u8]| {
    // Under fuzz/target (scripts/fuzz runs in fuzz/), not the shared temp dir.
    let dir = std::env::current_dir()
        .unwrap()
        .join("target/fuzz-tmp")
        .join(std::process::id().to_string());
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("p.toml");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    let ctx = LoadContext {
        home: dir.clone(),
        workspace: dir.clone(),
        user_dir: None,
    };
    if let Err(e) = load(&file.display().to_string(), &ctx) {
        let msg = e.to_string();
        assert!(!msg.chars().any(|c| c.is_control() && c != '\n'), "{msg:?}");
    }
});
