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
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
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
        _ => url.to_owned(),
    }
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
        return Ok((folder(Path::new(url)).map_err(bad)?, show.clone()));
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
    let prefix = parsed.path().trim_matches('/').to_owned();
    // Set key by key: options the provider's environment gives (such as
    // AWS_ALLOW_HTTP for a server on plain HTTP) stay.
    let timeouts = [
        (
            ClientConfigKey::Timeout,
            format!("{}ms", timeout.as_millis()),
        ),
        (
            ClientConfigKey::ConnectTimeout,
            format!("{}ms", timeout.min(Duration::from_secs(5)).as_millis()),
        ),
    ];
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: timeout,
        ..RetryConfig::default()
    };
    let built = |r: object_store::Result<Arc<dyn ObjectStore>>| {
        r.map_err(|e| bad(format!("cannot open: {e}")))
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| bad("not a local path".into()))?;
            return Ok((folder(&path).map_err(bad)?, show));
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

/// A folder remote (created if missing).
fn folder(path: &Path) -> Result<Arc<dyn ObjectStore>, String> {
    let path = std::path::absolute(path).map_err(|e| format!("not a path: {e}"))?;
    std::fs::create_dir_all(&path).map_err(|e| format!("cannot create the folder: {e}"))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
        .map_err(|e| format!("cannot open the folder: {e}"))?;
    Ok(Arc::new(store))
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
    fn an_unknown_scheme_is_a_clear_error() {
        let err = open_store("ftp://host/x", Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown scheme `ftp://`"), "{err}");
    }
}
