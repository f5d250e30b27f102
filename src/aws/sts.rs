//! The STS calls: GetSessionToken, AssumeRole hops, GetCallerIdentity; their errors told
//! apart (a refused MFA code from everything else) without quoting the request.

use anyhow::{Context, Result, anyhow};
use aws_sdk_sts::error::ProvideErrorMetadata;
use zeroize::Zeroizing;

use super::Credentials;
use super::profile::Plan;
use super::request::Session;
use crate::ui::Ui;

/// Who a session belongs to.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

/// GetCallerIdentity with the session's credentials.
pub fn caller_identity(s: &Session) -> Result<Identity> {
    let rt = io_runtime()?;
    let region = s.region.clone().unwrap_or_else(|| "us-east-1".to_string());
    rt.block_on(async {
        let client = sts_client(&s.credentials, &region, s.sts_endpoint.as_deref());
        let out = client
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| sts_error("GetCallerIdentity", e))?;
        Ok(Identity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
            user_id: out.user_id().unwrap_or_default().to_string(),
        })
    })
}

pub(super) fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn sts_client(creds: &Credentials, region: &str, endpoint: Option<&str>) -> aws_sdk_sts::Client {
    let provider = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.to_string(),
        creds.session_token.as_ref().map(|t| t.to_string()),
        None,
        "nixstore-auth",
    );
    let mut b = aws_sdk_sts::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region.to_string()))
        .credentials_provider(provider);
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    aws_sdk_sts::Client::from_conf(b.build())
}

pub(super) enum StsFailure {
    /// STS refused the MFA code (wrong, reused, or out of time).
    MfaRefused(String),
    Other(anyhow::Error),
}

fn sts_error<E>(op: &str, e: aws_sdk_sts::error::SdkError<E>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e.code() {
        Some(code) => anyhow!(
            "STS {op} failed: {code}: {}",
            e.message().unwrap_or("no message")
        ),
        None => {
            use aws_sdk_sts::error::SdkError;
            // Only a short reason: the SDK's full error text quotes the request (MFA code
            // included).
            let why = match &e {
                SdkError::TimeoutError(_) => "timed out",
                SdkError::DispatchFailure(d) if d.is_timeout() => "timed out",
                SdkError::DispatchFailure(d) if d.is_io() => "cannot connect",
                SdkError::DispatchFailure(_) => "the request could not be sent",
                SdkError::ResponseError(_) => "the answer was unreadable",
                _ => "failed",
            };
            anyhow!(
                "STS {op} failed: {why}. Check the network and the STS endpoint \
                 (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or the profile's endpoint_url)"
            )
        }
    }
}

fn classify<E>(op: &str, e: aws_sdk_sts::error::SdkError<E>, sent_code: bool) -> StsFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let msg = e
        .message()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_string();
    let lower = msg.to_ascii_lowercase();
    if sent_code
        && e.code() == Some("AccessDenied")
        && (lower.contains("multifactor") || lower.contains("mfa"))
    {
        return StsFailure::MfaRefused(msg);
    }
    StsFailure::Other(sts_error(op, e))
}

fn convert(c: Option<&aws_sdk_sts::types::Credentials>, op: &str) -> Result<Credentials> {
    let c = c.with_context(|| format!("STS {op} returned no credentials"))?;
    Ok(Credentials {
        access_key_id: c.access_key_id().to_string(),
        secret_access_key: Zeroizing::new(c.secret_access_key().to_string()),
        session_token: Some(Zeroizing::new(c.session_token().to_string())),
        expiration: Some(c.expiration().secs()),
    })
}

/// The STS calls of a plan: GetSessionToken with MFA, or the AssumeRole hops (the MFA code
/// goes to the last hop that names the device).
pub(super) async fn run_sts(
    plan: &Plan,
    base: &Credentials,
    code: Option<&str>,
    duration: Option<u32>,
    region: &str,
    endpoint: Option<&str>,
    ui: &Ui,
) -> std::result::Result<Credentials, StsFailure> {
    if let Some(serial) = &plan.session_token_mfa {
        ui.debug(format!(
            "GetSessionToken for profile {:?} with MFA device {serial}",
            plan.profile
        ));
        let client = sts_client(base, region, endpoint);
        let out = client
            .get_session_token()
            .serial_number(serial)
            .set_token_code(code.map(str::to_string))
            .set_duration_seconds(duration.or(plan.duration_seconds).map(|d| d as i32))
            .send()
            .await
            .map_err(|e| classify("GetSessionToken", e, code.is_some()))?;
        return convert(out.credentials(), "GetSessionToken").map_err(StsFailure::Other);
    }
    let mfa_hop = plan.hops.iter().rposition(|h| h.mfa_serial.is_some());
    let mut current = base.clone();
    for (i, hop) in plan.hops.iter().enumerate() {
        let last = i + 1 == plan.hops.len();
        let session_name = hop
            .session_name
            .clone()
            .unwrap_or_else(|| format!("nixstore-auth-{}", crate::time::now()));
        let dur = if last {
            duration.or(hop.duration_seconds).or(plan.duration_seconds)
        } else {
            hop.duration_seconds
        };
        ui.debug(format!(
            "AssumeRole {} (profile {:?}, as {})",
            hop.role_arn, hop.profile, current.access_key_id
        ));
        let client = sts_client(&current, region, endpoint);
        let mut call = client
            .assume_role()
            .role_arn(&hop.role_arn)
            .role_session_name(session_name)
            .set_external_id(hop.external_id.clone())
            .set_duration_seconds(dur.map(|d| d as i32));
        let with_code = mfa_hop == Some(i);
        if with_code {
            call = call
                .set_serial_number(hop.mfa_serial.clone())
                .set_token_code(code.map(str::to_string));
        }
        let out = call
            .send()
            .await
            .map_err(|e| classify("AssumeRole", e, with_code))?;
        current = convert(out.credentials(), "AssumeRole").map_err(StsFailure::Other)?;
    }
    Ok(current)
}
