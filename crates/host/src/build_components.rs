//! `build`: runs each component's `[component.NAME.build] command`, like `spin build`.

use std::process::Command;

use anyhow::{bail, Context};

use crate::manifest::Manifest;

/// Runs every build command in manifest order, stopping at the first failure.
/// A command shared by several components runs once.
pub fn build(manifest: &Manifest) -> anyhow::Result<()> {
    let mut done: Vec<(String, std::path::PathBuf)> = Vec::new();
    for (id, component) in &manifest.components {
        let Some(build) = &component.build else {
            println!("component `{id}` has no build command; skipping");
            continue;
        };
        let workdir = match &build.workdir {
            Some(dir) => manifest.root.join(dir),
            None => manifest.root.clone(),
        };
        let key = (build.command.clone(), workdir.clone());
        if done.contains(&key) {
            continue;
        }
        println!("building component `{id}`: {}", build.command);
        let status = Command::new("sh")
            .arg("-c")
            .arg(&build.command)
            .current_dir(&workdir)
            .status()
            .with_context(|| format!("cannot run the build command of `{id}`"))?;
        if !status.success() {
            bail!("the build command of component `{id}` failed ({status})");
        }
        done.push(key);
    }
    Ok(())
}
