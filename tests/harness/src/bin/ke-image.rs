//! `ke-image`: writes the final stage of a Dockerfile as an OCI archive, with
//! no container engine (see `kubernetes_executor_testkit::image`).
//!
//!     ke-image --dockerfile deploy/Dockerfile --context . \
//!         --map /src/target=$CARGO_TARGET_DIR --map /src=. \
//!         --name docker.io/library/kubernetes-executor:dev --out image.tar

use std::path::PathBuf;

use anyhow::{Context, Result};
use kubernetes_executor_testkit::image::{Sources, parse_dockerfile, write_archive};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut dockerfile, mut context, mut name, mut out) = (None, None, None, None);
    let mut maps = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--dockerfile" => dockerfile = Some(PathBuf::from(value()?)),
            "--context" => context = Some(PathBuf::from(value()?)),
            "--name" => name = Some(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--map" => {
                let v = value()?;
                let (prefix, host) = v
                    .split_once('=')
                    .with_context(|| format!("--map takes STAGE_PATH=HOST_PATH, got {v}"))?;
                maps.push((prefix.to_string(), PathBuf::from(host)));
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let dockerfile = dockerfile.context("--dockerfile is required")?;
    let text = std::fs::read_to_string(&dockerfile)
        .with_context(|| format!("reading {}", dockerfile.display()))?;
    let stage = parse_dockerfile(&text).with_context(|| dockerfile.display().to_string())?;
    let sources = Sources {
        context: context.unwrap_or_else(|| PathBuf::from(".")),
        maps,
    };
    let name = name.context("--name is required")?;
    let out = out.context("--out is required")?;
    let digest = write_archive(&stage, &sources, &name, &out)?;
    println!("{name} {digest} {}", out.display());
    Ok(())
}
