//! The Debian package, installed as an administrator would: `dpkg -i` into the sandbox's
//! Debian sid next to its asterisk package; the module from the package loads and sends a
//! real call's webhooks; an existing webhook.conf is never overwritten; a package built for
//! another Asterisk ABI is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{repo, run, Receiver, Sandbox};

/// Builds the package from this build's module.
fn build_deb() -> PathBuf {
    let out = common::target_dir().join("live-deb");
    let deb = run(Command::new(repo().join("asterisk/deb.sh"))
        .arg(&out)
        .env("RES_WEBHOOK_SO", common::module()));
    PathBuf::from(deb.trim())
}

/// `dpkg` (or any command) inside the sandbox root; its status and output.
fn in_root(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .output()
        .expect("chroot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Removes the package when the test ends, pass or fail (the next test installs its build).
struct Uninstall(PathBuf);

impl Drop for Uninstall {
    fn drop(&mut self) {
        let _ = in_root(&self.0, &["dpkg", "--purge", "res-webhook"]);
        let _ = std::fs::remove_file(self.0.join("etc/asterisk/webhook.conf"));
        let _ = std::fs::remove_file(self.0.join("tmp/res_webhook.deb"));
        let _ = std::fs::remove_file(self.0.join("tmp/res_webhook-other-abi.deb"));
    }
}

#[test]
fn the_deb_installs_with_dpkg_loads_and_sends_a_call() {
    if !common::live_prerequisites() {
        return;
    }
    let deb = build_deb();
    let name = deb.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("res_webhook_") && name.ends_with("_amd64.deb"),
        "{name}"
    );
    let rx = Receiver::start();
    let conf = "
[crm]
type = webhook
url = @RECEIVER@/hook
events = start, answer, end
param = call_id => ${call_id}
param = event => ${event}
param = caller => ${caller}
";
    let mut dpkg_out = String::new();
    // Dropped last: Asterisk stops first, then the package goes.
    let _uninstall = Uninstall(common::sandbox_root());
    let pbx = Sandbox::start_with("package", conf, &rx.url(), |root| {
        let admin_conf = root.join("etc/asterisk/webhook.conf");
        std::fs::write(&admin_conf, "; the administrator's own\n").unwrap();
        std::fs::copy(&deb, root.join("tmp/res_webhook.deb")).unwrap();

        // Built for another Asterisk: dpkg refuses it (the ABI is a dependency).
        let other = other_abi(&deb, root);
        let (ok, out) = in_root(root, &["dpkg", "-i", "/tmp/res_webhook-other-abi.deb"]);
        assert!(!ok, "installed against the wrong ABI: {out}");
        assert!(out.contains("asterisk-abi-0000"), "{out}");
        let _ = in_root(root, &["dpkg", "--purge", "res-webhook"]);
        drop(other);

        let (ok, out) = in_root(root, &["dpkg", "-i", "/tmp/res_webhook.deb"]);
        assert!(ok, "dpkg -i failed: {out}");
        dpkg_out = out;
        assert_eq!(
            std::fs::read_to_string(&admin_conf).unwrap(),
            "; the administrator's own\n",
            "an existing webhook.conf is never overwritten"
        );
        // Without one, the first install puts the sample there.
        std::fs::remove_file(&admin_conf).unwrap();
        let (ok, out) = in_root(root, &["dpkg", "-i", "/tmp/res_webhook.deb"]);
        assert!(ok, "reinstall failed: {out}");
        let sample = std::fs::read_to_string(&admin_conf).unwrap();
        assert!(sample.contains("[general]"), "{sample}");
        let (ok, files) = in_root(root, &["dpkg", "-L", "res-webhook"]);
        assert!(ok);
        assert!(
            files.contains("/usr/lib/x86_64-linux-gnu/asterisk/modules/res_webhook.so")
                && files.contains("/usr/share/doc/res_webhook/webhook.conf.sample"),
            "{files}"
        );
    });
    let Some(pbx) = pbx else { return };
    assert!(dpkg_out.contains("Setting up res-webhook"), "{dpkg_out}");

    let shown = pbx.cli("module show like res_webhook");
    assert!(
        shown.contains("res_webhook.so") && shown.contains("Running"),
        "{shown}"
    );
    assert!(pbx.call("79161250000", "74951234567", 500));
    let got = rx.wait_for("start, answer, end", Duration::from_secs(20), |g| {
        g.iter().any(|r| r.json()["event"] == "end")
    });
    let kinds: Vec<String> = got
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["start", "answer", "end"]);
    assert!(got.iter().all(|r| r.json()["caller"] == "79161250000"));
}

/// The same package, its `Depends:` naming an ABI no Asterisk provides.
fn other_abi(deb: &Path, root: &Path) -> PathBuf {
    let work = deb.with_extension("other");
    let _ = std::fs::remove_dir_all(&work);
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&work));
    let control = work.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let changed: String = text
        .lines()
        .map(|l| match l.strip_prefix("Depends: asterisk-abi-") {
            Some(rest) => format!(
                "Depends: asterisk-abi-{}{}",
                "0".repeat(32),
                &rest[rest.find(',').unwrap_or(rest.len())..]
            ),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(text, changed, "a Depends: asterisk-abi-… line");
    std::fs::write(&control, changed).unwrap();
    let out = root.join("tmp/res_webhook-other-abi.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&work)
        .arg(&out));
    let _ = std::fs::remove_dir_all(&work);
    out
}
