//! Shell completions and man pages for every tool, from their clap definitions.

use std::path::Path;

use clap::CommandFactory;

/// Every tool's clap command.
pub fn commands() -> Vec<clap::Command> {
    vec![do_gc_wait::Cli::command(), do_tag::Cli::command(), do_deploy::Cli::command(), do_prune::Cli::command()]
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
