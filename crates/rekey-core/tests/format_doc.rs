#![allow(clippy::unwrap_used, clippy::expect_used)]
//! docs/FORMAT.md's worked examples are what the code computes today.

use rekey_core::worked_examples;

#[test]
fn worked_examples_match_the_code() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md");
    let doc = std::fs::read_to_string(doc_path).expect("docs/FORMAT.md exists");
    let generated = worked_examples::markdown(
        include_bytes!("fixtures/rsa-2048-a.pk8"),
        include_bytes!("fixtures/worked-example-rsa-oaep-sha256.bin"),
    )
    .expect("every worked example round-trips");
    let expected = worked_examples::splice(&doc, &generated).expect("markers present");
    assert!(
        doc == expected,
        "docs/FORMAT.md is stale: run `cargo xtask format-doc` and commit the result"
    );
}
