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

/// `GetSessionToken` for a long-term key with an MFA code: a session with MFA context.
pub(super) async fn get_session_token(
    base: &Credentials,
    serial: &str,
    code: Option<&str>,
    duration: Option<u32>,
    region: &str,
    endpoint: Option<&str>,
    ui: &Ui,
) -> std::result::Result<Credentials, StsFailure> {
    ui.debug(format!(
        "GetSessionToken as {} with MFA device {serial}",
        base.access_key_id
    ));
    let client = sts_client(base, region, endpoint);
    let out = client
        .get_session_token()
        .serial_number(serial)
        .set_token_code(code.map(str::to_string))
        .set_duration_seconds(duration.map(|d| d as i32))
        .send()
        .await
        .map_err(|e| classify("GetSessionToken", e, code.is_some()))?;
    convert(out.credentials(), "GetSessionToken").map_err(StsFailure::Other)
}

/// The STS calls of a plan with the code sent directly: GetSessionToken with MFA (a profile
/// without a role), or the AssumeRole hops (the code goes to the last hop naming the device).
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
        return get_session_token(
            base,
            serial,
            code,
            duration.or(plan.duration_seconds),
            region,
            endpoint,
            ui,
        )
        .await;
    }
    assume_hops(plan, base, code, duration, region, endpoint, ui).await
}

/// The AssumeRole hops of a plan from `start`. With `code`, the last hop naming an MFA device
/// sends it; without, no hop does (the base session's MFA context stands for it).
pub(super) async fn assume_hops(
    plan: &Plan,
    start: &Credentials,
    code: Option<&str>,
    duration: Option<u32>,
    region: &str,
    endpoint: Option<&str>,
    ui: &Ui,
) -> std::result::Result<Credentials, StsFailure> {
    let mfa_hop = code.and(plan.hops.iter().rposition(|h| h.mfa_serial.is_some()));
    let mut current = start.clone();
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

/// `AssumeRoleWithWebIdentity` (unsigned: the token is the proof), as CI jobs use it.
pub(super) async fn assume_role_with_web_identity(
    role_arn: &str,
    session_name: &str,
    token: &str,
    duration: Option<u32>,
    region: &str,
    endpoint: Option<&str>,
) -> Result<Credentials> {
    let mut b = aws_sdk_sts::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region.to_string()));
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    let client = aws_sdk_sts::Client::from_conf(b.build());
    let out = client
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .web_identity_token(token)
        .set_duration_seconds(duration.map(|d| d as i32))
        .send()
        .await
        .map_err(|e| sts_error("AssumeRoleWithWebIdentity", e))?;
    convert(out.credentials(), "AssumeRoleWithWebIdentity")
}
