#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| offers_fuzz::money_bodies(data));
