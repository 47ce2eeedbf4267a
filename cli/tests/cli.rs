//! The `skiff` command line itself: flags, environment variables and errors without a cluster.

use std::process::Command;

fn skiff() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.env_remove("KUBECONFIG").env_remove("SKIFF_DATA_DIR");
    cmd
}

#[test]
fn server_flags_are_documented_with_their_environment_variables() {
    let out = skiff().args(["server", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--data-dir", "SKIFF_DATA_DIR"),
        ("--listen", "SKIFF_LISTEN"),
        ("--tls-san", "SKIFF_TLS_SAN"),
        ("--history-revisions", "SKIFF_HISTORY_REVISIONS"),
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(help.contains(env), "{env} missing:\n{help}");
    }
}

#[test]
fn client_commands_without_a_cluster_say_how_to_get_one() {
    let home = tempfile::tempdir().unwrap();
    let out = skiff()
        .args(["get", "pods"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no cluster found"), "{err}");
    assert!(err.contains("skiff server"), "{err}");
}

#[test]
fn a_bad_listen_address_is_refused_before_anything_starts() {
    let home = tempfile::tempdir().unwrap();
    let out = skiff()
        .args(["server", "--listen", "not-an-address", "--data-dir"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'not-an-address'"));
    assert!(!home.path().join("admin.kubeconfig").exists());
}

#[test]
fn boolean_environment_variables_take_the_usual_spellings() {
    let home = tempfile::tempdir().unwrap();
    // A taken port fails the server once every flag and variable has been read, so reaching
    // that error shows the variables were taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = skiff()
        .args(["server", "--listen"])
        .arg(taken.local_addr().unwrap().to_string())
        .arg("--data-dir")
        .arg(home.path())
        .env("SKIFF_NO_FSYNC", "1")
        .env("SKIFF_DISABLE_AGENT", "yes")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Address already in use"), "{err}");

    let other = tempfile::tempdir().unwrap();
    let out = skiff()
        .args(["server", "--data-dir"])
        .arg(other.path())
        .env("SKIFF_NO_FSYNC", "sometimes")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'sometimes' for '--no-fsync'"),
        "{err}"
    );
    assert!(!other.path().join("admin.kubeconfig").exists());
}
