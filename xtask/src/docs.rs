//! Shell completions and man pages for every tool, from their clap definitions.

use std::path::Path;

use clap::CommandFactory;

/// Every tool's clap command, the simulator's and the xtask's (as `cargo-xtask`, the name cargo
/// gives a subcommand's page).
pub fn commands() -> Vec<clap::Command> {
    vec![
        do_gc_wait::Cli::command(),
        do_tag::Cli::command(),
        do_deploy::Cli::command(),
        do_prune::Cli::command(),
        do_login::Cli::command(),
        do_sim::Cli::command(),
        crate::cli::Cli::command().name("cargo-xtask"),
    ]
}

/// Every flag and subcommand, of every command, that has no description.
pub fn undescribed() -> Vec<String> {
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", command.get_name()).trim().to_string();
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} --{}", arg.get_long().unwrap_or(arg.get_id().as_str())));
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                missing.push(format!("{path} {}", sub.get_name()));
            }
            walk(sub, &path, missing);
        }
    }
    let mut missing = Vec::new();
    for command in commands() {
        walk(&command, "", &mut missing);
    }
    missing
}

/// The usage line of an xtask subcommand, as `--help` shows it.
pub fn usage_of(task: &str) -> String {
    let mut command = crate::cli::Cli::command();
    command.build();
    command.find_subcommand_mut(task).map(|c| c.render_usage().to_string()).unwrap_or_default()
}

/// The long help of an xtask subcommand.
pub fn help_of(task: &str) -> String {
    let mut command = crate::cli::Cli::command();
    command.build();
    command.find_subcommand_mut(task).map(|c| c.render_long_help().to_string()).unwrap_or_default()
}

/// Writes `completions/` (bash, zsh, fish) and `man/` (section 1) under `out`.
pub fn generate(out: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    let completions = out.join("completions");
    let man = out.join("man");
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(&man)?;
    for mut command in commands() {
        let name = command.get_name().to_string();
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            written.push(clap_complete::generate_to(shell, &mut command, &name, &completions)?);
        }
        let page = man.join(format!("{name}.1"));
        let mut bytes = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut bytes)?;
        std::fs::write(&page, bytes)?;
        written.push(page);
    }
    Ok(written)
}
