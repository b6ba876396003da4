//! The cost of reading a request path the one canonical way and asking the route policy about
//! it, per request: `canonicalize` + `Policy::find` against the 50-rule policy that
//! `benches/run.sh` (mode `routes50`) uses, for the benchmark's own path and for spellings
//! that take the slow path. Prints nanoseconds per call; compare with the per-request CPU the
//! load benchmark reports (`peer CPU us/req`).
//!
//! ```sh
//! cargo bench --bench canonical
//! ```

use std::hint::black_box;
use std::time::Instant;

use http::Method;
use portcullis::policy::{canonicalize, Options, Policy, RuleSpec};

fn rules() -> Vec<RuleSpec> {
    let mut rules: Vec<RuleSpec> = (1..50)
        .map(|i| RuleSpec {
            path: format!("/app/v1/r{i}/{{id}}"),
            methods: Some(vec!["GET".into(), "POST".into()]),
            require: Some("workspace:read".into()),
            ..RuleSpec::default()
        })
        .collect();
    rules.push(RuleSpec {
        path: "/app/**".into(),
        require: Some("user:read".into()),
        ..RuleSpec::default()
    });
    rules
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and then one pass of each case is enough to show it still works.
    let timing = std::env::args().any(|a| a == "--bench");
    let policy = Policy::new(&rules(), Options::default()).expect("valid rules");
    let paths = [
        ("the benchmark's path", "/app/v1/items/42"),
        ("a path with an escape", "/app/v1/caf%C3%A9/42"),
        ("a path to normalise", "//app/v1/%69tems/42"),
        ("a refused path", "/app/v1/..;/items"),
    ];
    let n: u32 = if timing { 2_000_000 } else { 1 };
    for (what, path) in paths {
        let started = Instant::now();
        for _ in 0..n {
            let found = canonicalize(black_box(path)).map(|p| {
                policy
                    .find(&Method::GET, &p)
                    .map(|f| f.rule.is_some())
                    .is_ok()
            });
            black_box(found.is_ok());
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
        if timing {
            println!("{what:<24} {path:<24} {ns:>8.1} ns per canonicalize + find");
        }
    }
}
