//! The built binary: how it fails when its configuration is wrong.

use std::process::Command;

/// One line naming the variable, a non-zero exit, and no backtrace even when asked for one.
#[test]
fn a_configuration_error_is_one_line_whatever_rust_backtrace_says() {
    let out = Command::new(env!("CARGO_BIN_EXE_palaver"))
        .arg("openapi")
        .env("RUST_BACKTRACE", "1")
        .env("PORT", "eighty")
        .output()
        .expect("run palaver");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "stderr:\n{stderr}");
    assert!(stderr.starts_with("palaver: PORT: "), "stderr:\n{stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
