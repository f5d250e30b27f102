//! `use` for a GCS (`gs://`) or Azure (`azure://`, or the portal's blob URL) cache: recorded
//! like an S3 cache (the nix-daemon reaches it through the proxy's URL; the keys go into
//! nix.conf), its credential taken by the proxy from the user's environment (Google's ADC,
//! Azure's Entra sources) or, for Azure, a key or SAS stored with `secret set`.

use super::*;

pub(super) fn use_cloud(
    args: &UseArgs,
    entry: CacheEntry,
    config_path: &Path,
    layout: &crate::proxy::Layout,
    ui: &Ui,
) -> Result<i32> {
    if args.token_stdin || args.token_env.is_some() {
        bail!("{}", token_refusal(&entry));
    }
    if args.secret_store.is_some() {
        bail!(
            "--secret-store applies to HTTPS caches; an Azure key or SAS goes into the keyring with `nixstore-auth secret set NAME --azure-key-stdin` (or --sas-stdin)"
        );
    }
    let name = entry.name.clone();
    let azure_without_secret = matches!(entry.kind, CacheKind::Azure(_)) && !entry.has_token;
    let code = super::s3::use_s3(args, entry, config_path, layout, ui)?;
    if azure_without_secret && !args.edit.dry_run {
        ui.info(format!(
            "its credential: Entra ID from your environment or `az login`; to use the storage account key or a SAS instead: `nixstore-auth secret set {name} --azure-key-stdin` (or --sas-stdin)"
        ));
    }
    Ok(code)
}

/// Why a GCS or Azure cache takes no `--token-stdin`, and what it takes instead.
fn token_refusal(entry: &CacheEntry) -> String {
    match entry.kind {
        CacheKind::Azure(_) => format!(
            "Azure caches take no --token-stdin: store the account key with `nixstore-auth secret set {} --azure-key-stdin` or a SAS with `--sas-stdin`, or use Entra ID (az login, AZURE_* variables)",
            entry.name
        ),
        _ => "GCS caches take no token: credentials come from Google's Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, the metadata server)".to_string(),
    }
}
