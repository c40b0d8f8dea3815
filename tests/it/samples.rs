//! The committed sample cores (sample-cores/samples/) work without generating
//! anything: compressed cores, read through their own small sysroots.

use crate::support;

use std::path::Path;

use serde_json::Value;

#[test]
fn committed_samples_match_their_truth_through_their_sysroot() {
    let dir = support::repo().join("sample-cores/samples");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let samples = manifest.as_array().unwrap();
    assert!(samples.len() >= 2, "at least two committed samples");
    for sample in samples {
        let name = sample["name"].as_str().unwrap();
        let sysroot =
            support::unpack_sysroot(&dir.join(sample["sysroot_tar_zst"].as_str().unwrap()));
        let core = dir.join(sample["core_zst"].as_str().unwrap());
        let scratch = tempfile::tempdir().unwrap();
        let mut args = vec![
            "info".to_string(),
            "--json".to_string(),
            "--no-default-debug-dir".to_string(),
            "--temp-dir".to_string(),
            scratch.path().display().to_string(),
            "--sysroot".to_string(),
            sysroot.path().display().to_string(),
        ];
        for d in sample["debug_dirs_in_sysroot"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let d = d.as_str().unwrap().trim_start_matches('/');
            args.extend([
                "--debug-dir".to_string(),
                sysroot.path().join(d).display().to_string(),
            ]);
        }
        args.push(core.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = support::pymortem(&args);
        assert_eq!(code, 0, "{name}: {stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let truth: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(sample["truth"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let problems = support::info_disagreements(name, &report, &truth);
        support::assert_no_problems(&problems);
        assert_eq!(report["core"]["compression"], "zstd");
        assert_eq!(report["core"]["size"], sample["core_size"]);
        // The files the sample ships come from its sysroot, verified by build-id.
        for file in sample["sysroot_files"].as_array().unwrap() {
            let recorded = file.as_str().unwrap();
            let Some(module) = report["modules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["path"] == recorded)
            else {
                continue; // e.g. a debug file, not a mapped module
            };
            assert_eq!(module["file"]["state"], "verified", "{name}: {recorded}");
            let found = module["file"]["path"].as_str().unwrap();
            assert!(
                Path::new(found).starts_with(sysroot.path()),
                "{name}: {found} is outside the sysroot"
            );
        }
        // Nothing is left behind in the temp dir.
        assert_eq!(
            std::fs::read_dir(scratch.path()).unwrap().count(),
            0,
            "{name}: temp files removed"
        );
    }
}
