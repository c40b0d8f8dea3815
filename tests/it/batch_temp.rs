//! `triage --jobs N` on compressed cores: the decompressed copies held at
//! once stay within the batch's bound (`--max-batch-temp`), and every core is
//! still read whole.

use serde_json::Value;

use crate::support;

#[test]
fn concurrent_decompressions_share_one_bound_and_all_finish() {
    if support::matrix_missing() {
        return;
    }
    let entry = support::host_threads_kernel_entry();
    let raw = std::fs::read(entry["core"].as_str().unwrap()).unwrap();
    let size = raw.len() as u64;
    assert!(
        size < 64 << 20,
        "the bound below assumes a core under 64 MiB"
    );
    let compressed = zstd::stream::encode_all(&raw[..], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cores = dir.path().join("cores");
    std::fs::create_dir(&cores).unwrap();
    for i in 0..4 {
        std::fs::write(cores.join(format!("core.{i}.zst")), &compressed).unwrap();
    }
    let temp = tempfile::tempdir().unwrap();
    // Room is reserved in 64 MiB steps: 100 MiB holds one core, not two.
    let mut args = vec![
        "triage".to_string(),
        "--json".into(),
        "--jobs".into(),
        "4".into(),
        "--max-batch-temp".into(),
        "100M".into(),
        "--temp-dir".into(),
        temp.path().to_string_lossy().into_owned(),
    ];
    args.extend(support::search_args(&entry));
    args.push(cores.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, stdout, stderr) = support::pymortem(&args);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no summary line ({e}); stdout: {stdout}\nstderr: {stderr}"));
    assert_eq!(summary["cores"], 4, "{summary}");
    assert_eq!(summary["errors"], 0, "stdout: {stdout}\nstderr: {stderr}");
    let groups = summary["groups"].as_array().unwrap();
    assert_eq!(
        groups.len(),
        1,
        "the same core four times: one group; {summary}"
    );
    assert_eq!(groups[0]["count"], 4);
    let limit = summary["temp"]["limit_bytes"].as_u64().unwrap();
    let peak = summary["temp"]["peak_bytes"].as_u64().unwrap();
    assert_eq!(limit, 100 << 20);
    assert!(
        (size..=limit).contains(&peak),
        "peak {peak} bytes: above one core ({size}) and within the bound ({limit})"
    );
    for line in stdout.lines().filter(|l| l.contains("\"path\"")) {
        assert!(
            !line.contains("truncated"),
            "a core was cut short by the bound: {line}"
        );
    }
}
