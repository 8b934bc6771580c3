//! The audit trail's chain: every kind of tampering is detected by
//! `toolgate audit verify`, at the line where it happened.

use serde_json::{Map, Value, json};
use toolgate::audit::AuditWriter;

use crate::util::{scratch, toolgate};

fn record(i: u64) -> Map<String, Value> {
    let value = json!({"kind": "decision", "agent": "bot", "tool": "t", "decision": if i.is_multiple_of(2) { "allow" } else { "deny" }, "args": {"n": i, "note": "ünïcode \"quoted\""}});
    value.as_object().cloned().expect("object")
}

fn write_trail(path: &std::path::Path, count: u64, rotate: Option<u64>) {
    let mut writer = AuditWriter::open(path, rotate).expect("open");
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
    assert!(out.starts_with("ok: 50 records in 1 file, head sha256:"), "{out}");
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
    assert!(out.starts_with("ok: 55 records in"), "{out}");
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
    assert!(out.starts_with("ok: 10 records"), "{out}");
}

/// A record longer than the window the writer used to read on reopening
/// (1 MiB) made the trail impossible to reopen after a restart.
#[test]
fn a_trail_ending_in_a_huge_record_reopens() {
    let dir = scratch(&[]);
    let path = dir.path().join("audit.jsonl");
    {
        let mut writer = AuditWriter::open(&path, None).expect("open");
        writer.append(record(0)).expect("append");
        let mut huge = record(1);
        huge.insert("args".into(), json!({"x": "y".repeat(3 << 20)}));
        writer.append(huge).expect("append");
        writer.sync().expect("sync");
    }
    write_trail(&path, 2, None);
    let (code, out, err) = verify(dir.path(), &["audit.jsonl"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("ok: 4 records"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).expect("trail").permissions().mode() & 0o777, 0o600);
}
