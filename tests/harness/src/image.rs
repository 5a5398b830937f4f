//! Container images without a container engine: reads the final stage of a
//! Dockerfile (`FROM scratch`, `COPY`, `USER`, `ENTRYPOINT`, `ENV`,
//! `WORKDIR`, `LABEL`) and writes the same image as an OCI archive that
//! `ctr images import` (and `docker load`, `podman load`) accept.
//!
//! The Dockerfile stays the one description of the image: `make image` and
//! `docker build` produce the same files, user and entrypoint because both
//! read it. Files from a build stage (`COPY --from=<stage>`) are taken from
//! the host: the caller maps the stage's paths (`/src/target` → the cargo
//! target directory, `/src` → the repository); an unmapped absolute path is
//! the same path on the host (e.g. the CA bundle of `ca-certificates`).

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The final stage of a Dockerfile, as far as the image layout goes.
#[derive(Debug, Default, PartialEq)]
pub struct Stage {
    /// `(from stage or None for the context, source, destination)`.
    pub copies: Vec<(Option<String>, String, String)>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Parses the last stage; it must be `FROM scratch` (anything else needs a
/// base image from a registry, which this builder does not fetch).
pub fn parse_dockerfile(text: &str) -> Result<Stage> {
    // Join continuation lines, drop comments.
    let mut lines = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let l = raw.trim();
        if l.starts_with('#') || (l.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(body) = l.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(l);
        lines.push(std::mem::take(&mut cur));
    }
    let last_from = lines
        .iter()
        .rposition(|l| l.to_ascii_uppercase().starts_with("FROM "))
        .context("no FROM line")?;
    let from: Vec<&str> = lines[last_from].split_whitespace().collect();
    if from.get(1).map(|s| s.to_ascii_lowercase()) != Some("scratch".into()) {
        bail!(
            "the final stage must be FROM scratch (found {:?})",
            lines[last_from]
        );
    }
    let mut stage = Stage::default();
    for line in &lines[last_from + 1..] {
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "COPY" => {
                let mut words: Vec<&str> = rest.split_whitespace().collect();
                let mut from = None;
                while let Some(flag) = words.first().and_then(|w| w.strip_prefix("--")) {
                    match flag.split_once('=') {
                        Some(("from", stage)) => from = Some(stage.to_string()),
                        _ => bail!("COPY flag --{flag} is not supported"),
                    }
                    words.remove(0);
                }
                let [src, dst] = words[..] else {
                    bail!("COPY takes one source and one destination: {line:?}");
                };
                stage.copies.push((from, src.into(), dst.into()));
            }
            "USER" => stage.user = Some(rest.into()),
            "ENTRYPOINT" => stage.entrypoint = exec_form(rest)?,
            "CMD" => stage.cmd = exec_form(rest)?,
            "WORKDIR" => stage.workdir = Some(rest.into()),
            "ENV" => {
                let (k, v) = rest
                    .split_once('=')
                    .with_context(|| format!("ENV must be KEY=VALUE: {line:?}"))?;
                stage.env.push((k.into(), v.trim_matches('"').into()));
            }
            "LABEL" => {
                let (k, v) = rest
                    .split_once('=')
                    .with_context(|| format!("LABEL must be KEY=VALUE: {line:?}"))?;
                stage
                    .labels
                    .insert(k.trim_matches('"').into(), v.trim_matches('"').into());
            }
            other => bail!("{other} is not supported in the final stage: {line:?}"),
        }
    }
    Ok(stage)
}

fn exec_form(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).with_context(|| format!("use the JSON (exec) form: {s}"))
}

/// Where a `COPY` source is on this machine.
pub struct Sources {
    /// The build context (the repository root).
    pub context: PathBuf,
    /// Stage path prefix → host path, longest prefix first.
    pub maps: Vec<(String, PathBuf)>,
}

impl Sources {
    pub fn resolve(&self, from: Option<&str>, src: &str) -> PathBuf {
        if from.is_none() {
            return self.context.join(src);
        }
        let mut maps: Vec<&(String, PathBuf)> = self.maps.iter().collect();
        maps.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        for (prefix, host) in maps {
            if let Some(rest) = src.strip_prefix(prefix.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return host.join(rest.trim_start_matches('/'));
            }
        }
        PathBuf::from(src)
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One uncompressed layer holding the stage's files (owned by root, mode
/// from the source, mtime 0 so the same inputs give the same digest).
pub fn layer(stage: &Stage, sources: &Sources) -> Result<Vec<u8>> {
    let mut files: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
    for (from, src, dst) in &stage.copies {
        let path = sources.resolve(from.as_deref(), src);
        let data = std::fs::read(&path)
            .with_context(|| format!("COPY {src}: reading {}", path.display()))?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&path)?.permissions().mode() & 0o755
        };
        let dst = if dst.ends_with('/') {
            let name = Path::new(src).file_name().context("source file name")?;
            format!("{dst}{}", name.to_string_lossy())
        } else {
            dst.clone()
        };
        files.insert(dst.trim_start_matches('/').to_string(), (data, mode));
    }
    // Every parent directory, once, parents first (sorted).
    let dirs: std::collections::BTreeSet<String> = files
        .keys()
        .flat_map(|name| Path::new(name).ancestors().skip(1))
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| format!("{}/", d.display()))
        .collect();
    let mut tar = tar::Builder::new(Vec::new());
    for d in &dirs {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, d, std::io::empty())?;
    }
    for (name, (data, mode)) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, name, data.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

/// The image config (what `docker inspect` shows under `Config`).
pub fn config(stage: &Stage, layer_digest: &str) -> Value {
    let mut env: Vec<String> =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
    for (k, v) in &stage.env {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }
    let mut cfg = json!({
        "Env": env,
        "WorkingDir": stage.workdir.clone().unwrap_or_else(|| "/".into()),
    });
    if let Some(u) = &stage.user {
        cfg["User"] = json!(u);
    }
    if !stage.entrypoint.is_empty() {
        cfg["Entrypoint"] = json!(stage.entrypoint);
    }
    if !stage.cmd.is_empty() {
        cfg["Cmd"] = json!(stage.cmd);
    }
    if !stage.labels.is_empty() {
        cfg["Labels"] = json!(stage.labels);
    }
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created_by": "ke-image (from the Dockerfile's final stage)" }],
    })
}

/// Writes `name` (e.g. `docker.io/library/kubernetes-executor:dev`) as an
/// OCI archive: an OCI image layout in a tar, with a docker `manifest.json`
/// beside it so every loader names the image the same way.
pub fn write_archive(stage: &Stage, sources: &Sources, name: &str, out: &Path) -> Result<String> {
    let layer = layer(stage, sources)?;
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&config(stage, &layer_digest))?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest, "size": layer.len(),
        }],
    }))?;
    let manifest_digest = sha256(&manifest);
    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let docker_manifest = serde_json::to_vec(&json!([{
        "Config": blob(&config_digest),
        "RepoTags": [name.trim_start_matches("docker.io/library/")],
        "Layers": [blob(&layer_digest)],
    }]))?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut put = |path: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        tar.append_data(&mut h, path, data)?;
        Ok(())
    };
    put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    put("index.json", &index)?;
    put("manifest.json", &docker_manifest)?;
    put(&blob(&layer_digest), &layer)?;
    put(&blob(&config_digest), &config)?;
    put(&blob(&manifest_digest), &manifest)?;
    let bytes = tar.into_inner()?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = out.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, out)?;
    Ok(manifest_digest)
}

/// The image in an OCI archive: its layers (verified against their
/// digests) and its config.
fn load(archive: &Path) -> Result<(Vec<Vec<u8>>, Value)> {
    let mut blobs = BTreeMap::new();
    let mut outer = tar::Archive::new(std::fs::File::open(archive)?);
    for e in outer.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data)?;
        blobs.insert(path, data);
    }
    let get = |p: &str| {
        blobs
            .get(p)
            .with_context(|| format!("{p} missing from the archive"))
    };
    let index: Value = serde_json::from_slice(get("index.json")?)?;
    let digest = |v: &Value| {
        format!(
            "blobs/sha256/{}",
            v["digest"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("sha256:")
        )
    };
    let manifest: Value = serde_json::from_slice(get(&digest(&index["manifests"][0]))?)?;
    let config: Value = serde_json::from_slice(get(&digest(&manifest["config"]))?)?;
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().context("layers")? {
        let layer = get(&digest(l))?;
        if sha256(layer) != l["digest"].as_str().unwrap_or("") {
            bail!("layer digest mismatch");
        }
        layers.push(layer.clone());
    }
    Ok((layers, config))
}

/// The regular files of an OCI archive's image (absolute path → mode) and
/// its config: what tests compare with the Dockerfile.
pub fn inspect_archive(archive: &Path) -> Result<(BTreeMap<String, u32>, Value)> {
    let (layers, config) = load(archive)?;
    let mut files = BTreeMap::new();
    for layer in &layers {
        let mut a = tar::Archive::new(layer.as_slice());
        for e in a.entries()? {
            let e = e?;
            if e.header().entry_type().is_file() {
                let path = e.path()?.to_string_lossy().to_string();
                files.insert(format!("/{path}"), e.header().mode()?);
            }
        }
    }
    Ok((files, config))
}

/// The contents of one file of the image (`/kubernetes-executor`).
pub fn read_file(archive: &Path, path: &str) -> Result<Vec<u8>> {
    let (layers, _) = load(archive)?;
    for layer in layers.iter().rev() {
        let mut a = tar::Archive::new(layer.as_slice());
        for e in a.entries()? {
            let mut e = e?;
            if e.path()?.to_string_lossy() == path.trim_start_matches('/') {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data)?;
                return Ok(data);
            }
        }
    }
    bail!("{path} is not in the image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_stage_is_read_and_other_bases_are_refused() {
        let s = parse_dockerfile(
            "FROM rust AS build\nRUN make\n\n# the image\nFROM scratch\nCOPY --from=build /a/b /b\nCOPY x/y \\\n  /etc/y\nUSER 1:1\nENV A=\"b\"\nENTRYPOINT [\"/b\"]\n",
        )
        .expect("parse");
        assert_eq!(
            s.copies,
            vec![
                (Some("build".into()), "/a/b".into(), "/b".into()),
                (None, "x/y".into(), "/etc/y".into())
            ]
        );
        assert_eq!(s.user.as_deref(), Some("1:1"));
        assert_eq!(s.entrypoint, vec!["/b"]);
        assert_eq!(s.env, vec![("A".into(), "b".into())]);
        let err =
            parse_dockerfile("FROM scratch AS a\nFROM debian\nCOPY a b\n").expect_err("debian");
        assert!(err.to_string().contains("FROM scratch"), "{err}");
        let err = parse_dockerfile("FROM scratch\nRUN true\n").expect_err("RUN");
        assert!(err.to_string().contains("RUN"), "{err}");
        let err = parse_dockerfile("FROM scratch\nENTRYPOINT /b\n").expect_err("shell form");
        assert!(err.to_string().contains("exec"), "{err}");
    }

    #[test]
    fn stage_paths_map_by_longest_prefix() {
        let s = Sources {
            context: "/repo".into(),
            maps: vec![
                ("/src".into(), "/repo".into()),
                ("/src/target".into(), "/cache/target".into()),
            ],
        };
        assert_eq!(
            s.resolve(Some("build"), "/src/target/release/x"),
            PathBuf::from("/cache/target/release/x")
        );
        assert_eq!(
            s.resolve(Some("build"), "/src/deploy/a"),
            PathBuf::from("/repo/deploy/a")
        );
        assert_eq!(
            s.resolve(Some("build"), "/srcx/a"),
            PathBuf::from("/srcx/a")
        );
        assert_eq!(
            s.resolve(Some("build"), "/etc/ssl/c"),
            PathBuf::from("/etc/ssl/c")
        );
        assert_eq!(s.resolve(None, "deploy/a"), PathBuf::from("/repo/deploy/a"));
    }

    #[test]
    fn an_archive_holds_the_stage_and_is_reproducible() {
        let dir = tempfile::tempdir().expect("tmp");
        let bin = dir.path().join("bin");
        std::fs::write(&bin, b"\x7fELF").expect("w");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o775)).expect("chmod");
        }
        std::fs::write(
            dir.path().join("passwd"),
            b"nonroot:x:65532:65532::/:/sbin/nologin\n",
        )
        .expect("w");
        let stage = parse_dockerfile(
            "FROM scratch\nCOPY --from=build /out/bin /app\nCOPY passwd /etc/passwd\nUSER 65532:65532\nENTRYPOINT [\"/app\"]\n",
        )
        .expect("parse");
        let sources = Sources {
            context: dir.path().into(),
            maps: vec![("/out".into(), dir.path().into())],
        };
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        let da = write_archive(&stage, &sources, "docker.io/library/x:1", &a).expect("a");
        let db = write_archive(&stage, &sources, "docker.io/library/x:1", &b).expect("b");
        assert_eq!(da, db, "same inputs, same digest");
        let (files, config) = inspect_archive(&a).expect("inspect");
        assert_eq!(files.get("/app"), Some(&0o755));
        assert_eq!(files.get("/etc/passwd"), Some(&0o644));
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"], json!(["/app"]));
        assert_eq!(read_file(&a, "/app").expect("read"), b"\x7fELF");
        assert!(read_file(&a, "/nope").is_err());
        // A missing source is an error naming it, not a smaller image.
        let missing = parse_dockerfile("FROM scratch\nCOPY nope /nope\n").expect("parse");
        let err = write_archive(&missing, &sources, "x:1", &a).expect_err("missing");
        assert!(format!("{err:#}").contains("COPY nope"), "{err:#}");
    }
}
