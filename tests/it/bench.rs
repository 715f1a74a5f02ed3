//! `cargo xtask bench --quick`, so the benchmark itself cannot rot: every row is measured and
//! every bound that applies to the small sizes holds.

#[test]
fn the_quick_benchmark_measures_every_row_and_keeps_its_bounds() {
    let rows = xtask::bench::run(&crate::bench_binaries(), true).unwrap();
    let table = xtask::bench::table(&rows);
    let measures: Vec<&str> = rows.iter().map(|r| r.measure.as_str()).collect();
    for expected in [
        "prune of 2,000 manifests: requests",
        "prune of 2,000 manifests: deletions, left",
        "do-sim: load 10,000 manifests from a state file",
        "dry run over 10,000 manifests, one repository",
        "do-prune peak memory per 10,000 manifests",
        "  default concurrency / --concurrency 1",
        "600 deletions under 300 requests per 3 s",
        "deployment end noticed after it happened",
    ] {
        assert!(measures.contains(&expected), "no row {expected:?} in\n{table}");
    }
    let broken: Vec<&xtask::bench::Row> = rows.iter().filter(|r| r.holds == Some(false)).collect();
    assert!(broken.is_empty(), "bounds missed: {broken:?}\n{table}");
    assert!(rows.iter().all(|r| !r.measured.is_empty()), "{table}");
    let ratio: f64 = rows.iter().find(|r| r.measure.contains("/ --concurrency 1")).unwrap().measured.parse().unwrap();
    assert!(ratio < 0.9, "listing at the default concurrency is faster than one at a time: {ratio}\n{table}");
    assert!(table.lines().count() == rows.len() + 1);
}
