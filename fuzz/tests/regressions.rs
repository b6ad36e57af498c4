//! Every input a fuzz run ever crashed on (`regressions/<target>/`, kept by
//! `.ci/run`), run again through its target's checks.

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 4] = [
    ("callback_url", offers_fuzz::callback_url),
    ("cursor", offers_fuzz::cursor),
    ("keys_and_names", offers_fuzz::keys_and_names),
    ("money_bodies", offers_fuzz::money_bodies),
];

#[test]
fn every_kept_crash_passes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for (target, check) in TARGETS {
        for entry in std::fs::read_dir(root.join(target)).expect("the target's regressions") {
            let path = entry.expect("an entry").path();
            if path.file_name().is_some_and(|n| n != ".keep") {
                check(&std::fs::read(&path).expect("the input"));
            }
        }
    }
}
