//! The fuzz targets' saved corpus (fuzz/corpus/<target>/), replayed through the
//! same checks the fuzzers run: every input found interesting stays a
//! regression test on stable Rust, in seconds.

use std::path::Path;

#[test]
fn every_saved_input_passes_its_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in hoard_server::fuzzing::TARGETS {
        let dir = corpus.join(name);
        let mut inputs = 0;
        for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = file.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "no saved inputs for {name}");
    }
}
