use super::*;

#[test]
fn renders_help_type_and_zero_series_and_a_cumulative_histogram() {
    let t = Telemetry::new();
    t.works_stored.inc_by(3);
    t.batch_size.observe(7.0);
    t.batch_size.observe(200.0);
    let out = t.render();
    assert!(out.contains("# HELP ppctl_works_stored_total queued demands stored as done works.\n# TYPE ppctl_works_stored_total counter\nppctl_works_stored_total 3\n"), "{out}");
    assert!(
        out.contains("ppctl_nacked_total 0\n"),
        "a zero counter is kept: {out}"
    );
    assert!(
        out.contains("ppctl_batch_size_bucket{le=\"5\"} 0\n"),
        "{out}"
    );
    assert!(
        out.contains("ppctl_batch_size_bucket{le=\"10\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("ppctl_batch_size_bucket{le=\"300\"} 2\n"),
        "{out}"
    );
    assert!(out.contains("ppctl_batch_size_sum 207.0\n"), "{out}");
    assert!(
        !out.contains("ppctl_queue_depth"),
        "depths appear once watched: {out}"
    );
    assert_eq!(t.dead_letters(), None);
    t.register(Group::Depths);
    t.register(Group::Depths);
    let out = t.render();
    assert_eq!(
        out.matches("# TYPE ppctl_queue_depth gauge").count(),
        1,
        "{out}"
    );
    assert_eq!(t.dead_letters(), Some(0));
}
