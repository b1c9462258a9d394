//! The generated Rust code is checked in so that a plain `cargo build` needs
//! no `capnp` binary. This test regenerates it with the `capnp` tool and
//! compares; with `NETSERVER_REGEN=1` it rewrites the checked-in file instead
//! (that is how to regenerate after editing the schema: `./regen.sh`).

use std::path::{Path, PathBuf};

fn capnp_tool_available() -> bool {
    std::process::Command::new("capnp")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

fn generate_into(dir: &Path) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    capnpc::CompilerCommand::new()
        .src_prefix(crate_dir.join("schema"))
        .file(crate_dir.join("schema/netserver.capnp"))
        .output_path(dir)
        .run()
        .expect("capnp compile failed");
    dir.join("netserver_capnp.rs")
}

#[test]
fn generated_code_matches_schema() {
    if !capnp_tool_available() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the capnp tool is not installed; .ci/run installs Debian's capnproto");
        }
        eprintln!("SKIPPED generated_code_matches_schema: the `capnp` tool is not installed (apt-get install capnproto)");
        return;
    }
    let out_dir = std::env::temp_dir().join(format!("netserver-capnp-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let fresh = std::fs::read_to_string(generate_into(&out_dir)).unwrap();
    std::fs::remove_dir_all(&out_dir).ok();
    let checked_in_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/netserver_capnp.rs");
    if std::env::var("NETSERVER_REGEN").is_ok_and(|v| v == "1") {
        std::fs::write(&checked_in_path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "capnp/src/netserver_capnp.rs is out of date with schema/netserver.capnp: run capnp/regen.sh and commit the result"
    );
}
