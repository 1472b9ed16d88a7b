//! Which remote a command uses, and opening it.
//!
//! The first of: `--remote URL` (or `TUNEFLOW_REMOTE`), the pipeline's
//! `[cache] remote`, the user's `~/.config/tuneflow/config.toml`
//! (`$XDG_CONFIG_HOME/tuneflow/config.toml`) `[cache] remote`.
//!
//! Schemes: `s3://BUCKET/PREFIX` (AWS and S3-compatible servers),
//! `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX` (also `azure://`,
//! `abfs://`), `http://` and `https://` (WebDAV), `file:///PATH` or a plain
//! path (a folder, shared or local). Credentials, endpoints and regions
//! come from each provider's usual environment variables (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), never from tuneflow's files: they never enter a
//! key, a log or the run record, and a URL is shown without any user or
//! password it carries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};

use super::RemoteError;

/// The remote URL a command uses, if any: `flag` (`--remote`), else
/// `TUNEFLOW_REMOTE`, else the pipeline's, else the user's (a malformed
/// user config is an error naming it).
pub fn pick(flag: Option<&str>, pipeline: Option<&str>) -> Result<Option<String>, RemoteError> {
    let env = std::env::var("TUNEFLOW_REMOTE").ok();
    match first_given(&[flag, env.as_deref(), pipeline]) {
        Some(url) => Ok(Some(url)),
        None => user_remote(),
    }
}

/// The first of `urls` that is set and not blank.
fn first_given(urls: &[Option<&str>]) -> Option<String> {
    urls.iter()
        .flatten()
        .map(|u| u.trim())
        .find(|u| !u.is_empty())
        .map(str::to_owned)
}

/// The user's config file.
pub fn user_config() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tuneflow").join("config.toml"))
}

/// `[cache] remote` of the user's config file (an unreadable or malformed
/// file is an error naming it).
pub fn user_remote() -> Result<Option<String>, RemoteError> {
    let Some(path) = user_config() else {
        return Ok(None);
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let bad = |reason: String| RemoteError::BadUrl {
        url: path.display().to_string(),
        reason,
    };
    let doc: toml::Table = text.parse().map_err(|e| bad(format!("not TOML: {e}")))?;
    match doc.get("cache").and_then(|c| c.get("remote")) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(first_given(&[Some(s)])),
        Some(other) => Err(bad(format!(
            "`[cache] remote` must be a URL string, not {}",
            other.type_str()
        ))),
    }
}

/// `url` without a user, password or query (which may hold secrets).
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.scheme() != "file" => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => redact(url),
    }
}

/// `text` with the user, password and query of every URL in it removed
/// (the stores' own error messages repeat the full URL).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | ')'))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        out.push_str(
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        );
        out.push_str(path.split_once('?').map_or(path, |(p, _)| p));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Opens the store `url` names, with request timeout `timeout`.
pub(super) fn open_store(
    url: &str,
    timeout: Duration,
) -> Result<(Arc<dyn ObjectStore>, String), RemoteError> {
    let show = shown(url);
    let bad = |reason: String| RemoteError::BadUrl {
        url: show.clone(),
        reason,
    };
    let Some((scheme, _)) = url.split_once("://").filter(|(s, _)| !s.contains('/')) else {
        return Ok((folder(Path::new(url), &show)?, show.clone()));
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
    let prefix = parsed.path().trim_matches('/').to_owned();
    let timeouts = client_keys(scheme, timeout);
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: timeout,
        ..RetryConfig::default()
    };
    let built = |r: object_store::Result<Arc<dyn ObjectStore>>| {
        r.map_err(|e| bad(format!("cannot open: {}", redact(&e.to_string()))))
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| bad("not a local path".into()))?;
            return Ok((folder(&path, &show)?, show));
        }
        "s3" | "s3a" => built(
            timeouts
                .iter()
                .fold(object_store::aws::AmazonS3Builder::from_env(), |b, (k, v)| b.with_config(object_store::aws::AmazonS3ConfigKey::Client(*k), v))
                .with_url(url)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(PrefixStore::new(s, prefix.as_str())) as _),
        )?,
        "gs" => built(
            timeouts
                .iter()
                .fold(object_store::gcp::GoogleCloudStorageBuilder::from_env(), |b, (k, v)| b.with_config(object_store::gcp::GoogleConfigKey::Client(*k), v))
                .with_url(url)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(PrefixStore::new(s, prefix.as_str())) as _),
        )?,
        "az" | "azure" | "abfs" | "abfss" | "adl" => built(
            timeouts
                .iter()
                .fold(object_store::azure::MicrosoftAzureBuilder::from_env(), |b, (k, v)| b.with_config(object_store::azure::AzureConfigKey::Client(*k), v))
                .with_url(url)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(PrefixStore::new(s, prefix.as_str())) as _),
        )?,
        "http" | "https" => built(
            timeouts
                .iter()
                .fold(object_store::http::HttpBuilder::new(), |b, (k, v)| b.with_config(*k, v))
                .with_url(url)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _),
        )?,
        other => {
            return Err(bad(format!(
                "unknown scheme `{other}://`; expected s3://, gs://, az://, http(s)://, file:// or a folder path"
            )))
        }
    };
    Ok((store, show))
}

/// Client settings, key by key, so that those the provider's environment
/// gives (such as AWS_ALLOW_HTTP for a server on plain HTTP) stay: a
/// request may wait `timeout` for each piece of its answer (a large object
/// may take longer in all, as long as it keeps coming), connecting at most
/// 5 s of it.
fn client_keys(scheme: &str, timeout: Duration) -> Vec<(ClientConfigKey, String)> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut keys = vec![
        (ClientConfigKey::ReadTimeout, ms(timeout)),
        (
            ClientConfigKey::Timeout,
            ms((timeout * 60).max(Duration::from_secs(600))),
        ),
        (
            ClientConfigKey::ConnectTimeout,
            ms(timeout.min(Duration::from_secs(5))),
        ),
    ];
    if scheme == "http" {
        keys.push((ClientConfigKey::AllowHttp, "true".into()));
    }
    keys
}

/// A folder remote (created if missing; one that cannot be is
/// unavailable, not misconfigured: a run goes on without it).
fn folder(path: &Path, show: &str) -> Result<Arc<dyn ObjectStore>, RemoteError> {
    let unavailable = |reason: String| RemoteError::Unavailable {
        url: show.to_owned(),
        reason,
    };
    let path = std::path::absolute(path).map_err(|e| unavailable(format!("not a path: {e}")))?;
    if path.exists() && !path.is_dir() {
        return Err(RemoteError::BadUrl {
            url: show.to_owned(),
            reason: "is a file, not a folder".into(),
        });
    }
    std::fs::create_dir_all(&path)
        .map_err(|e| unavailable(format!("cannot create the folder: {e}")))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
        .map_err(|e| unavailable(format!("cannot open the folder: {e}")))?;
    Ok(Arc::new(store))
}

/// Refuses a folder remote that is, holds or lies inside the local cache
/// folder `cache`: the remote's objects and the local store would be one
/// folder, and `cache gc --remote` would judge the local objects.
pub fn check_apart(url: &str, cache: &Path) -> Result<(), RemoteError> {
    let folder = match url.split_once("://") {
        None => std::path::PathBuf::from(url),
        Some(("file", _)) => match url::Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
        {
            Some(p) => p,
            None => return Ok(()),
        },
        Some(_) => return Ok(()),
    };
    let (a, b) = (
        tuneflow_stages::paths::resolve(&folder),
        tuneflow_stages::paths::resolve(cache),
    );
    if a.starts_with(&b) || b.starts_with(&a) {
        return Err(RemoteError::BadUrl {
            url: url.to_owned(),
            reason: format!(
                "the remote folder overlaps the local cache folder `{}`; use a folder of its own",
                cache.display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown("https://user:secret@example.com/cache?sig=abc"),
            "https://example.com/cache"
        );
        assert_eq!(shown("s3://bucket/team"), "s3://bucket/team");
        assert_eq!(shown("/srv/cache"), "/srv/cache");
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_the_pipeline() {
        let first = |u: &[Option<&str>]| first_given(u);
        assert_eq!(
            first(&[Some("s3://a"), Some("s3://e"), Some("s3://b")]).as_deref(),
            Some("s3://a")
        );
        assert_eq!(
            first(&[None, Some(" "), Some("s3://b")]).as_deref(),
            Some("s3://b")
        );
        assert_eq!(first(&[None, None, None]), None);
    }

    #[test]
    fn credentials_in_urls_are_removed_from_any_text() {
        let t = "Error performing GET https://user:pa55@host:9/b/k?X-Amz-Signature=s3cr3t in 2s, \
                 then (http://tok@h/x) and s3://bucket/p";
        let r = redact(t);
        for secret in ["pa55", "user", "s3cr3t", "tok@"] {
            assert!(!r.contains(secret), "{r}");
        }
        assert!(r.contains("https://host:9/b/k in 2s"), "{r}");
        assert!(
            r.contains("(http://h/x)") && r.contains("s3://bucket/p"),
            "{r}"
        );
        assert!(!shown("https://u:PW@host:99999/x").contains("PW"));
    }

    #[test]
    fn a_folder_remote_must_not_overlap_the_local_cache() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join(".tuneflow");
        std::fs::create_dir_all(&cache).unwrap();
        for bad in [cache.clone(), cache.join("remote"), d.path().to_path_buf()] {
            assert!(
                check_apart(&bad.display().to_string(), &cache).is_err(),
                "{bad:?}"
            );
        }
        assert!(check_apart(&d.path().join("remote").display().to_string(), &cache).is_ok());
        assert!(check_apart("s3://b/p", &cache).is_ok());
    }

    #[test]
    fn an_unknown_scheme_is_a_clear_error() {
        let err = open_store("ftp://host/x", Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown scheme `ftp://`"), "{err}");
    }
}
