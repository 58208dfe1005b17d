#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hoard_server::fuzzing::range(data));
