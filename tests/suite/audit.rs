//! The audit trail's chain: every kind of tampering is detected by
//! `toolgate audit verify`, at the line where it happened.

use serde_json::{Map, Value, json};
use toolgate::audit::{AuditKey, AuditWriter, Sealer};

use crate::util::{scratch, toolgate};

fn record(i: u64) -> Map<String, Value> {
    let value = json!({"kind": "decision", "agent": "bot", "tool": "t", "decision": if i.is_multiple_of(2) { "allow" } else { "deny" }, "args": {"n": i, "note": "ünïcode \"quoted\""}});
    value.as_object().cloned().expect("object")
}

fn write_trail(path: &std::path::Path, count: u64, rotate: Option<u64>) {
    write_sealed(path, count, rotate, Sealer::Plain);
}

fn write_sealed(path: &std::path::Path, count: u64, rotate: Option<u64>, sealer: Sealer) {
    let mut writer = AuditWriter::open(path, rotate, sealer).expect("open");
    for i in 0..count {
        writer.append(record(i)).expect("append");
    }
    writer.sync().expect("sync");
}

/// Runs `audit verify` and returns (exit code, stdout, stderr).
fn verify(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = toolgate(dir).args(["audit", "verify"]).args(args).output().expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect()
}

fn write_lines(path: &std::path::Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
}

#[test]
fn an_intact_trail_verifies() {
    let dir = scratch(&[]);
    write_trail(&dir.path().join("audit.jsonl"), 50, None);
    let (code, out, _) = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("ok: 50 unkeyed records in 1 file, head sha256:"), "{out}");
}

#[test]
fn every_kind_of_tampering_is_detected_at_its_line() {
    let dir = scratch(&[]);
    let path = dir.path().join("audit.jsonl");
    write_trail(&path, 10, None);
    let original = lines(&path);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "edited",
            {
                let mut l = original.clone();
                l[3] = l[3].replace("\"deny\"", "\"allow\"");
                assert_ne!(l[3], original[3]);
                l
            },
            ":4: record's hash does not match",
        ),
        (
            "deleted",
            {
                let mut l = original.clone();
                l.remove(3);
                l
            },
            ":4: record does not link",
        ),
        (
            "reordered",
            {
                let mut l = original.clone();
                l.swap(2, 3);
                l
            },
            ":3: record does not link",
        ),
        (
            "inserted",
            {
                let mut l = original.clone();
                l.insert(6, original[6].clone());
                l
            },
            ":8: record does not link",
        ),
        ("first removed", original[1..].to_vec(), ":1: record does not link"),
        (
            "hash rewritten",
            {
                let mut l = original.clone();
                l[7] = format!("{}0\"}}", &l[7][..l[7].len() - 3]);
                l
            },
            ":8: record's hash does not match",
        ),
        (
            "an unsealed line appended (with its newline: not a cut)",
            {
                let mut l = original.clone();
                l.push(String::from("{\"kind\":\"decision\",\"decision\":\"allow\"}"));
                l
            },
            ":11: record has no valid hash field",
        ),
        (
            "not sealed",
            {
                let mut l = original.clone();
                l[5] = "{\"seq\": 6}".into();
                l
            },
            ":6: record has no valid hash field",
        ),
    ];
    for (name, tampered, expected) in cases {
        write_lines(&path, &tampered);
        let (code, _, err) = verify(dir.path(), &["audit.jsonl"]);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains(expected), "{name}: expected `{expected}` in {err}");
    }
    // A record cut in the middle (a crash or a careless `truncate`).
    let mut text = original.iter().map(|l| format!("{l}\n")).collect::<String>();
    text.truncate(text.len() - 20);
    std::fs::write(&path, &text).expect("write");
    let (code, _, err) = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(code, Some(1));
    assert!(err.contains(":10: last record is cut off"), "{err}");
    // Whole records removed from the end leave a valid prefix: only the
    // expected head (from `status`) reveals them.
    write_lines(&path, &original);
    let (_, out, _) = verify(dir.path(), &["audit.jsonl"]);
    let head = out.trim().rsplit(' ').next().expect("head").to_owned();
    write_lines(&path, &original[..8]);
    assert_eq!(verify(dir.path(), &["audit.jsonl"]).0, Some(0));
    let (code, _, err) = verify(dir.path(), &["audit.jsonl", "--head", &head]);
    assert_eq!(code, Some(1));
    assert!(err.contains("records were removed from its end"), "{err}");
}

#[test]
fn rotation_keeps_one_chain_across_files() {
    let dir = scratch(&[]);
    let path = dir.path().join("audit.jsonl");
    write_trail(&path, 40, Some(2_000));
    // Reopening continues the chain, also right after a rotation.
    write_trail(&path, 15, Some(2_000));
    let files = toolgate::audit::trail_files(&path).expect("files");
    assert!(files.len() >= 4, "{files:?}");
    let (code, out, err) = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ok: 55 unkeyed records in"), "{out}");
    // A rotated file verifies on its own only as a partial trail.
    let middle = files[1].file_name().expect("name").to_string_lossy().into_owned();
    assert_eq!(verify(dir.path(), &[&middle]).0, Some(1));
    assert_eq!(verify(dir.path(), &["--partial", &middle]).0, Some(0));
    // Removing a rotated file breaks the chain where the next file starts.
    std::fs::remove_file(&files[1]).expect("remove");
    let (code, _, err) = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(code, Some(1));
    assert!(err.contains(":1: record does not link"), "{err}");
}

#[test]
fn a_record_cut_by_a_crash_is_dropped_when_the_trail_reopens() {
    let dir = scratch(&[]);
    let path = dir.path().join("audit.jsonl");
    write_trail(&path, 5, None);
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("{\"agent\":\"bot\",\"kind\":\"deci");
    std::fs::write(&path, text).expect("write");
    write_trail(&path, 5, None);
    let (code, out, err) = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ok: 10 unkeyed records"), "{out}");
}

/// A record longer than the window the writer used to read on reopening
/// (1 MiB) made the trail impossible to reopen after a restart.
#[test]
fn a_trail_ending_in_a_huge_record_reopens() {
    let dir = scratch(&[]);
    let path = dir.path().join("audit.jsonl");
    {
        let mut writer = AuditWriter::open(&path, None, Sealer::Plain).expect("open");
        writer.append(record(0)).expect("append");
        let mut huge = record(1);
        huge.insert("args".into(), json!({"x": "y".repeat(3 << 20)}));
        writer.append(huge).expect("append");
        writer.sync().expect("sync");
    }
    write_trail(&path, 2, None);
    let (code, out, err) = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ok: 4 unkeyed records"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).expect("trail").permissions().mode() & 0o777, 0o600);
}

/// Makes a key file with `toolgate audit new-key` and loads it.
fn new_key(dir: &std::path::Path, name: &str) -> AuditKey {
    let output = toolgate(dir).args(["audit", "new-key", name]).output().expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    AuditKey::load(&dir.join(name)).expect("a usable key")
}

/// Re-seals `lines[from..]` with `sealer`, fixing every `prev`: what someone
/// who can write the trail does after editing it.
fn reseal(lines: &mut [String], from: usize, sealer: &Sealer) {
    let mut prev = match from {
        0 => toolgate::audit::chain::GENESIS.to_owned(),
        _ => toolgate::audit::chain::unseal(&lines[from - 1]).expect("sealed").1.to_owned(),
    };
    for line in &mut lines[from..] {
        let (body, _) = toolgate::audit::chain::unseal(line).expect("sealed");
        let old: Value = serde_json::from_str(&body).expect("json");
        let old_prev = old["prev"].as_str().expect("prev");
        let body = body.replace(&format!("\"prev\":\"{old_prev}\""), &format!("\"prev\":\"{prev}\""));
        let (sealed, hash) = sealer.seal(&prev, &body);
        *line = sealed.trim_end().to_owned();
        prev = hash;
    }
}

#[test]
fn without_the_key_a_keyed_trail_cannot_be_forged() {
    let dir = scratch(&[]);
    let path = dir.path().join("audit.jsonl");
    let key = new_key(dir.path(), "audit.key");
    write_sealed(&path, 10, None, Sealer::Keyed(key));
    let (code, out, err) = verify(dir.path(), &["audit.jsonl", "--key", "audit.key"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ok: 10 keyed records in 1 file, head hmac-sha256:"), "{out}");
    let (code, _, err) = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(code, Some(1));
    assert!(err.contains(":1: record is keyed (hmac-sha256); verify with --key FILE"), "{err}");

    let original = lines(&path);
    let mut edited = original.clone();
    edited[3] = edited[3].replace("\"deny\"", "\"allow\"");
    let forged_allow = |sealer: &Sealer| {
        let mut l = original.clone();
        l.push(original[9].replace("\"seq\":10", "\"seq\":11"));
        reseal(&mut l, 10, sealer);
        l
    };
    let other_key = Sealer::Keyed(AuditKey::generate().expect("random"));
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "an edit, the chain recomputed (sha256)",
            {
                let mut l = edited.clone();
                reseal(&mut l, 3, &Sealer::Plain);
                l
            },
            ":4: record is not keyed",
        ),
        (
            "an edit, the chain recomputed with a guessed key",
            {
                let mut l = edited.clone();
                reseal(&mut l, 3, &other_key);
                l
            },
            ":4: record's hash does not match",
        ),
        ("a forged allow appended (sha256)", forged_allow(&Sealer::Plain), ":11: record is not keyed"),
        (
            "a forged allow appended with a guessed key",
            forged_allow(&other_key),
            ":11: record's hash does not match",
        ),
        (
            "the whole trail rewritten with another key",
            {
                let mut l = edited.clone();
                reseal(&mut l, 0, &other_key);
                l
            },
            ":1: record's MAC matches none of the keys given",
        ),
    ];
    for (name, tampered, expected) in cases {
        write_lines(&path, &tampered);
        let (code, _, err) = verify(dir.path(), &["audit.jsonl", "--key", "audit.key"]);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains(expected), "{name}: expected `{expected}` in {err}");
    }
    // On an unkeyed trail, the recomputed edit passes: this is what the key is for.
    let plain = dir.path().join("plain.jsonl");
    write_trail(&plain, 10, None);
    let mut l = lines(&plain);
    l[3] = l[3].replace("\"deny\"", "\"allow\"");
    reseal(&mut l, 3, &Sealer::Plain);
    write_lines(&plain, &l);
    assert_eq!(verify(dir.path(), &["plain.jsonl"]).0, Some(0));
}

#[test]
fn a_writer_extends_only_an_intact_trail_sealed_its_way() {
    let dir = scratch(&[]);
    let path = dir.path().join("audit.jsonl");
    let key = new_key(dir.path(), "audit.key");
    write_sealed(&path, 5, None, Sealer::Keyed(key.clone()));
    let refused = |sealer: Sealer| match AuditWriter::open(&path, None, sealer) {
        Ok(_) => panic!("opened"),
        Err(error) => error.to_string(),
    };
    assert!(refused(Sealer::Plain).contains("is keyed (hmac-sha256): start the server with --audit-key"));
    let other = Sealer::Keyed(AuditKey::generate().expect("random"));
    assert!(refused(other).contains("last record does not verify"));
    // One writer at a time.
    let first = AuditWriter::open(&path, None, Sealer::Keyed(key.clone())).expect("open");
    assert!(refused(Sealer::Keyed(key.clone())).contains("another process writes the audit trail"));
    drop(first);
    // A forged record appended (sealed as a plain chain) or an edit near the end.
    let original = lines(&path);
    let mut forged = original.clone();
    forged.push(original[4].replace("\"seq\":5", "\"seq\":6"));
    reseal(&mut forged, 5, &Sealer::Plain);
    write_lines(&path, &forged);
    assert!(refused(Sealer::Keyed(key.clone())).contains("is not keyed"));
    let mut edited = original.clone();
    edited[2] = edited[2].replace("\"n\":2", "\"n\":7");
    write_lines(&path, &edited);
    let error = refused(Sealer::Keyed(key.clone()));
    assert!(
        error.contains("does not verify (record 3 of its last 1024 KiB: record's hash does not match"),
        "{error}"
    );
    // An unkeyed trail is not extended by a keyed writer, nor the reverse.
    let plain = dir.path().join("plain.jsonl");
    write_trail(&plain, 3, None);
    match AuditWriter::open(&plain, None, Sealer::Keyed(key)) {
        Ok(_) => panic!("a keyed writer extended an unkeyed trail"),
        Err(error) => assert!(error.to_string().contains("not keyed (sha256)"), "{error}"),
    }
}

#[test]
fn a_key_rotation_is_vouched_for_by_the_old_key() {
    let dir = scratch(&[]);
    let path = dir.path().join("audit.jsonl");
    let old = new_key(dir.path(), "old.key");
    let new = new_key(dir.path(), "new.key");
    write_sealed(&path, 5, None, Sealer::Keyed(old));
    let rotate = |old: &str| {
        toolgate(dir.path())
            .args(["audit", "rotate-key", "audit.jsonl", "--key", old, "--new-key", "new.key"])
            .output()
            .expect("runs")
    };
    assert_eq!(rotate("new.key").status.code(), Some(2), "the new key is not the old one");
    let output = rotate("old.key");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    write_sealed(&path, 3, None, Sealer::Keyed(new.clone()));
    let (code, out, err) = verify(dir.path(), &["audit.jsonl", "--key", "old.key", "--key", "new.key"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ok: 10 keyed records in 2 files"), "{out}");
    let (code, _, err) = verify(dir.path(), &["audit.jsonl", "--key", "old.key"]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!(":6: the trail moves to key {} here", new.id())), "{err}");
    let (code, _, err) = verify(dir.path(), &["audit.jsonl", "--key", "new.key"]);
    assert_eq!(code, Some(1));
    assert!(err.contains(":1: record's MAC matches none of the keys given"), "{err}");
    // The files written since the rotation verify with the new key alone.
    let (code, _, err) = verify(dir.path(), &["--partial", "audit.jsonl", "--key", "new.key"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch(&[]);
    new_key(dir.path(), "audit.key");
    let output = toolgate(dir.path()).args(["audit", "new-key", "audit.key"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(2), "never overwritten");
    std::fs::set_permissions(dir.path().join("audit.key"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    write_trail(&dir.path().join("audit.jsonl"), 1, None);
    let (code, _, err) = verify(dir.path(), &["audit.jsonl", "--key", "audit.key"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is readable or writable by others (mode 644)"), "{err}");
}
