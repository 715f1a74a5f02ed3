//! The shape of the code, checked as rust-analyzer's tidy tests check theirs: no source file over
//! 600 lines, no function over 80 lines in the tool crates and do-core, no tool crate type with
//! its methods over several files, no lock or cell carrying state between do-deploy's or
//! do-prune's phases. The exception lists are empty; one that is ever filled may
//! only shrink (a listed offender within bounds must leave it), and a new offender fails the
//! test with its name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FUNCTION_LINES: usize = 80;

/// Files over the bound (none).
const FILES_OVER: &[&str] = &[];

/// Functions over the bound, as "file: name" (none).
const FUNCTIONS_OVER: &[&str] = &[];

/// Types of a tool crate with `impl` blocks in more than one file, as "crate: type" (none).
const SPREAD_IMPLS: &[&str] = &[];

/// The tool crates: a type's methods live in one file.
const TOOL_CRATES: &[&str] = &["do-gc-wait", "do-tag", "do-deploy", "do-prune", "do-login"];

/// The crates whose functions are held to the bound (do-sim and xtask are tools for us).
const HELD_CRATES: &[&str] = &["do-core", "do-gc-wait", "do-tag", "do-deploy", "do-prune", "do-login"];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = workspace();
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    walk(&root.join("xtask/src"), &mut files);
    for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        walk(&krate.path().join("src"), &mut files);
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace()).unwrap().to_string_lossy().replace('\\', "/")
}

/// `(name, lines)` of each function in `text` before its tests: from the `fn` line to the
/// closing brace at the same indentation.
fn functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines.iter().position(|l| l.trim() == "#[cfg(test)]").unwrap_or(lines.len());
    let signature = regex::Regex::new(r"^(\s*)(?:pub(?:\([a-z]+\))? )?(?:const )?fn (\w+)").unwrap();
    let mut found = Vec::new();
    let mut i = 0;
    while i < end {
        let Some(captures) = signature.captures(lines[i]) else {
            i += 1;
            continue;
        };
        let indent = captures[1].to_string();
        let close = format!("{indent}}}");
        let Some(last) = (i..lines.len()).find(|&j| lines[j] == close) else { break };
        found.push((captures[2].to_string(), last - i + 1));
        i = last + 1;
    }
    found
}

#[test]
fn no_file_or_function_grows_past_its_bound_and_the_list_of_offenders_only_shrinks() {
    let mut files_over = BTreeSet::new();
    let mut functions_over = BTreeSet::new();
    for path in rust_sources() {
        let name = relative(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        if text.lines().count() > MAX_FILE_LINES {
            files_over.insert(name.clone());
        }
        let unit_tests = name.contains("_tests/");
        if !unit_tests && HELD_CRATES.iter().any(|c| name.starts_with(&format!("crates/{c}/"))) {
            for (function, lines) in functions(&text) {
                if lines > MAX_FUNCTION_LINES {
                    functions_over.insert(format!("{name}: {function}"));
                }
            }
        }
    }
    let listed_files: BTreeSet<String> = FILES_OVER.iter().map(|s| s.to_string()).collect();
    let listed_functions: BTreeSet<String> = FUNCTIONS_OVER.iter().map(|s| s.to_string()).collect();
    let new_files: Vec<&String> = files_over.difference(&listed_files).collect();
    let new_functions: Vec<&String> = functions_over.difference(&listed_functions).collect();
    assert!(new_files.is_empty(), "over {MAX_FILE_LINES} lines, split by concern: {new_files:?}");
    assert!(new_functions.is_empty(), "over {MAX_FUNCTION_LINES} lines, split into phases: {new_functions:?}");
    let fixed: Vec<&String> =
        listed_files.difference(&files_over).chain(listed_functions.difference(&functions_over)).collect();
    assert!(fixed.is_empty(), "within bounds now, so take them off the list in tests/it/tidy.rs: {fixed:?}");
}

/// The types with an inherent or trait `impl` in `text`.
fn implemented_types(text: &str) -> BTreeSet<String> {
    let pattern = regex::Regex::new(r"(?m)^impl(?:<[^>]*>)? (?:[\w:]+(?:<[^>]*>)? for )?([A-Z]\w*)").unwrap();
    pattern.captures_iter(text).map(|c| c[1].to_string()).collect()
}

#[test]
fn a_tool_crates_type_has_its_methods_in_one_file() {
    let mut spread = BTreeSet::new();
    for krate in TOOL_CRATES {
        let mut files_of: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for path in rust_sources().into_iter().filter(|p| relative(p).starts_with(&format!("crates/{krate}/src/"))) {
            for ty in implemented_types(&std::fs::read_to_string(&path).unwrap()) {
                *files_of.entry(ty).or_default() += 1;
            }
        }
        spread.extend(files_of.into_iter().filter(|(_, n)| *n > 1).map(|(ty, _)| format!("{krate}: {ty}")));
    }
    let listed: BTreeSet<String> = SPREAD_IMPLS.iter().map(|s| s.to_string()).collect();
    assert_eq!(spread, listed, "a type's impl blocks belong in one file (and a fixed one leaves SPREAD_IMPLS)");
    assert_eq!(
        implemented_types("impl Deployer<'_> {\nimpl fmt::Display for Secret {\nimpl<T> From<T> for Wrapper<T> {"),
        ["Deployer", "Secret", "Wrapper"].map(String::from).into()
    );
}

#[test]
fn the_function_finder_sees_a_long_function_and_ends_at_its_own_brace() {
    let body: String = (0..90).map(|i| format!("    let x{i} = {i};\n")).collect();
    let text = format!("fn short() {{\n}}\n\npub(crate) fn long() {{\n{body}}}\n#[cfg(test)]\nfn ignored() {{\n}}\n");
    assert_eq!(functions(&text), [("short".to_string(), 2), ("long".to_string(), 92)]);
}

/// The tools whose phases hand state on as values: a lock or a cell there would carry it
/// between phases out of sight.
const PHASED_CRATES: &[&str] = &["do-deploy", "do-prune"];

/// Where `text` names a `Mutex` or `RefCell`, as "line: text".
fn shared_state(text: &str) -> Vec<String> {
    let pattern = regex::Regex::new(r"\b(Mutex|RwLock|RefCell)\b").unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, line)| pattern.is_match(line))
        .map(|(n, line)| format!("{}: {}", n + 1, line.trim()))
        .collect()
}

#[test]
fn do_deploy_and_do_prune_hand_state_between_phases_as_values_not_through_a_lock_or_cell() {
    let mut found = Vec::new();
    for krate in PHASED_CRATES {
        for path in rust_sources().into_iter().filter(|p| relative(p).starts_with(&format!("crates/{krate}/src/"))) {
            let text = std::fs::read_to_string(&path).unwrap();
            found.extend(shared_state(&text).into_iter().map(|hit| format!("{}:{hit}", relative(&path))));
        }
    }
    assert!(
        found.is_empty(),
        "pass what a phase learnt on as a value (bounds on concurrency live in do_core::concurrent): {found:?}"
    );
    assert_eq!(
        shared_state("let a = 1;\ncache: Mutex<Vec<u8>>,\nuse std::cell::RefCell;"),
        ["2: cache: Mutex<Vec<u8>>,", "3: use std::cell::RefCell;"]
    );
}

/// The tests and items a document names as `module::name` (or `module::group::name`), with
/// the line.
fn named_items(text: &str) -> Vec<(usize, String, String)> {
    let pattern = regex::Regex::new(r"`([a-z_]+)::(?:[a-z_]+::)?([a-z0-9_]+)`").unwrap();
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for c in pattern.captures_iter(line) {
            found.push((n + 1, c[1].to_string(), c[2].to_string()));
        }
    }
    found
}

/// The source files a module name may be: a test file, a support module, a crate's module
/// and the unit tests beside it.
fn files_of_module(module: &str) -> Vec<PathBuf> {
    let root = workspace();
    let mut candidates =
        vec![root.join(format!("tests/it/{module}.rs")), root.join(format!("tests/it/{module}/mod.rs"))];
    // A module's unit tests may live beside it, in `{module}_tests/`.
    let beside = format!("{module}_tests");
    candidates.extend(rust_sources().into_iter().filter(|p| {
        p.file_stem().is_some_and(|s| s == module)
            || p.parent().and_then(|d| d.file_name()).is_some_and(|d| *d == *beside)
    }));
    candidates.into_iter().filter(|p| p.is_file()).collect()
}

#[test]
fn every_test_the_documents_name_exists_where_they_say() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for document in ["RELIABILITY.md", "ARCHITECTURE.md", "README.md"] {
        let text = std::fs::read_to_string(workspace().join(document)).unwrap();
        for (line, module, name) in named_items(&text) {
            checked += 1;
            let defines =
                |source: &str| source.contains(&format!("fn {name}(")) || source.contains(&format!("mod {name}"));
            let found = files_of_module(&module).iter().any(|f| defines(&std::fs::read_to_string(f).unwrap()));
            if !found {
                missing.push(format!("{document}:{line}: {module}::{name}"));
            }
        }
    }
    assert!(missing.is_empty(), "the documents name tests that are not where they say: {missing:#?}");
    assert!(checked > 100, "only {checked} test names were found in the documents");
    assert_eq!(
        named_items("see `prune::each_rule_alone_and_together` and `faults::prune::burst_5xx`, not `x`"),
        [(1, "prune".into(), "each_rule_alone_and_together".into()), (1, "faults".into(), "burst_5xx".into())]
    );
}
