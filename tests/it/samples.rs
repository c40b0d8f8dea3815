//! The committed sample cores (sample-cores/samples/) work without generating
//! anything: each is a bundle that carries the files its core needs.

use crate::support;

use serde_json::Value;

#[test]
fn committed_samples_match_their_truth_from_their_bundles_alone() {
    let dir = support::repo().join("sample-cores/samples");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let samples = manifest.as_array().unwrap();
    assert!(samples.len() >= 3, "three committed samples");
    for sample in samples {
        let name = sample["name"].as_str().unwrap();
        let bundle = dir.join(sample["bundle"].as_str().unwrap());
        let scratch = tempfile::tempdir().unwrap();
        let (code, stdout, stderr) = support::pymortem(&[
            "info",
            "--json",
            "--temp-dir",
            &scratch.path().display().to_string(),
            &bundle.display().to_string(),
        ]);
        assert_eq!(code, 0, "{name}: {stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let truth: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(sample["truth"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        support::assert_no_problems(&support::info_disagreements(name, &report, &truth));
        assert_eq!(report["core"]["size"], sample["core_size"]);
        // Every module file the sample lists comes from the bundle, verified by build-id.
        let label = format!("{}:files/", bundle.display());
        for file in sample["files"].as_array().unwrap() {
            if file["role"] == "debug_file" {
                continue;
            }
            let recorded = file["path"].as_str().unwrap();
            let module = report["modules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["path"] == recorded)
                .unwrap_or_else(|| panic!("{name}: no module {recorded}"));
            assert_eq!(module["file"]["state"], "verified", "{name}: {recorded}");
            let found = module["file"]["path"].as_str().unwrap();
            assert!(
                found.starts_with(&label),
                "{name}: {found} is not from the bundle"
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
