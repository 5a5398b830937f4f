//! The layering is a checked fact, not a convention: no import circles
//! between the modules of `actors/src`, no file in `src/` or `actors/src/`
//! over 500 lines (the catalog's data table excepted), and the binary
//! reaches the API only through the facade (run-action, which is a client
//! of its own, excepted). Comments are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn code(p: &Path) -> String {
    std::fs::read_to_string(p)
        .expect("read")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module of a file under `actors/src` (`execution/start.rs` →
/// `execution`; `machine_tests.rs` is `machine`'s).
fn module_of(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).expect("under src");
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .unwrap_or_default();
    let first = first.trim_end_matches(".rs").to_string();
    first.trim_end_matches("_tests").to_string()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in all {
        let m = module_of(&root, &f);
        if m == "lib" {
            continue;
        }
        let text = code(&f);
        let deps = g.entry(m.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != m {
                deps.insert(name);
            }
        }
    }
    g
}

fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_circles_between_modules() {
    let g = graph();
    assert!(
        g.contains_key("execution") && g.contains_key("k8s"),
        "{g:?}"
    );
    if let Some(c) = cycle(&g) {
        panic!("import circle: {}\n{g:#?}", c.join(" → "));
    }
    // The pure layer stays pure: no actor, API or engine below it.
    for pure in [
        "catalog", "machine", "decide", "status", "job", "lock", "grants", "authz", "duration",
        "tunables",
    ] {
        for banned in [
            "k8s",
            "tree",
            "supervisor",
            "execution",
            "rbac",
            "kill_switch",
            "job_watcher",
            "registry",
            "context",
        ] {
            assert!(
                !g.get(pure).is_some_and(|d| d.contains(banned)),
                "{pure} (pure) uses {banned}: {:?}",
                g.get(pure)
            );
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&g).map(|c| c.join("→")), Some("a→b→c→a".to_string()));
}

#[test]
fn no_file_is_a_grab_bag() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = Vec::new();
    files(&repo.join("src"), &mut all);
    files(&repo.join("actors/src"), &mut all);
    let mut long = Vec::new();
    for f in all {
        if f.ends_with("catalog/table.rs") {
            continue; // the catalog's data table
        }
        let n = std::fs::read_to_string(&f).expect("read").lines().count();
        if n > 500 {
            long.push(format!("{} ({n} lines)", f.display()));
        }
    }
    assert!(long.is_empty(), "files over 500 lines: {long:?}");
}

#[test]
fn the_binary_talks_to_the_api_only_through_the_facade() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    let mut all = Vec::new();
    files(&src, &mut all);
    for f in all {
        if f.components().any(|c| c.as_os_str() == "run_action") {
            continue; // what a Job runs: its own client, its own RBAC
        }
        let text = code(&f);
        for banned in ["kube::Api", "Api<", "kube::Client", "Client::try_from"] {
            assert!(
                !text.contains(banned),
                "{} uses {banned}: go through actors::k8s::KubeApi",
                f.display()
            );
        }
    }
}
