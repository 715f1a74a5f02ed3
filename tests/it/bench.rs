//! `cargo xtask bench --quick`, so the benchmark itself cannot rot: every row is measured and
//! every bound of counts (requests, reads, deletions) holds. Bounds of time are for the full
//! `cargo xtask bench`, not for a test on a busy machine.

#[test]
fn the_quick_benchmark_measures_every_row_and_keeps_its_bounds() {
    let rows = xtask::bench::run(&crate::bench_binaries(), true).unwrap();
    let table = xtask::bench::table(&rows);
    let measures: Vec<&str> = rows.iter().map(|r| r.measure.as_str()).collect();
    for expected in [
        "prune of 2,000 manifests: requests",
        "prune of 2,000 manifests: deletions, left",
        "do-sim: load 10,000 manifests from a state file",
        "dry run over 10,000 manifests (8,000 untagged), one repository, cache empty",
        "  do-prune CPU per manifest read",
        "  do-prune peak memory per manifest",
        "the same dry run again, registry unchanged",
        "  default concurrency / --concurrency 1",
        "600 deletions under 300 requests per 3 s",
        "deployment end noticed after it happened",
    ] {
        assert!(measures.iter().any(|m| m.starts_with(expected)), "no row {expected:?} in\n{table}");
    }
    let broken: Vec<&xtask::bench::Row> = rows.iter().filter(|r| r.holds == Some(false)).collect();
    assert!(broken.is_empty(), "bounds missed: {broken:?}\n{table}");
    assert!(rows.iter().all(|r| !r.measured.is_empty()), "{table}");
    assert!(table.lines().count() == rows.len() + 1);
}
