//! The provider side of a sign-in, through the `openidconnect` crate:
//! discovery (kept, and read again when a token is signed by a key the
//! kept JWKS lacks), the authorization URL with PKCE, `state` and `nonce`,
//! and the code exchange whose ID token is checked before any claim of it
//! is read; userinfo fills in the claims the ID token left out.

use std::sync::Arc;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError,
};
use serde_json::Value;

use crate::config::OidcProvider;

/// Why a sign-in could not be completed with the provider.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("its discovery document cannot be read ({0})")]
    Discovery(String),
    #[error("its configuration is unusable ({0})")]
    Config(String),
    #[error("the code was not accepted ({0})")]
    Exchange(String),
    #[error("it sent no ID token")]
    NoIdToken,
    #[error("its ID token was refused ({0})")]
    IdToken(String),
    #[error("its userinfo could not be read ({0})")]
    UserInfo(String),
}

/// A client made from the discovery document: authorization endpoint set,
/// token and userinfo endpoints as the document gives them.
type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The claims of a userinfo answer beyond the standard ones (`groups` and
/// the like), kept whole.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
struct OtherClaims(serde_json::Map<String, Value>);

impl openidconnect::AdditionalClaims for OtherClaims {}

/// What a browser is sent to the provider with, and what its callback
/// must bring back to be finished.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub verifier: String,
    pub nonce: String,
}

/// The checked ID token's subject and every claim in it, and the token
/// (the hint of a later sign-out at the provider).
pub struct Checked {
    pub subject: String,
    pub claims: Value,
    pub id_token: String,
}

struct Entry {
    config: OidcProvider,
    metadata: tokio::sync::Mutex<Option<Arc<CoreProviderMetadata>>>,
    /// The discovery document's `end_session_endpoint` (RP-initiated
    /// logout), which the core metadata type does not carry.
    end_session: parking_lot::Mutex<Option<String>>,
}

/// The configured providers, each with its discovery document once read.
pub struct Providers {
    entries: Vec<Entry>,
    http: openidconnect::reqwest::Client,
}

impl Default for Providers {
    fn default() -> Self {
        Providers::new(Vec::new())
    }
}

impl Providers {
    pub fn new(list: Vec<OidcProvider>) -> Providers {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider send us anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Providers {
            entries: list
                .into_iter()
                .map(|config| Entry {
                    config,
                    metadata: tokio::sync::Mutex::new(None),
                    end_session: parking_lot::Mutex::new(None),
                })
                .collect(),
            http,
        }
    }

    pub fn get(&self, name: &str) -> Option<&OidcProvider> {
        self.entries
            .iter()
            .find(|e| e.config.name == name)
            .map(|e| &e.config)
    }

    pub fn all(&self) -> impl Iterator<Item = &OidcProvider> {
        self.entries.iter().map(|e| &e.config)
    }

    /// The provider's discovery document (with its JWKS): the kept one, or
    /// read afresh when there is none or `fresh`.
    async fn metadata(
        &self,
        provider: &OidcProvider,
        fresh: bool,
    ) -> Result<Arc<CoreProviderMetadata>, FlowError> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.config.name == provider.name)
            .ok_or_else(|| FlowError::Config("unknown provider".into()))?;
        let mut kept = entry.metadata.lock().await;
        if let Some(m) = kept.as_ref()
            && !fresh
        {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(provider.issuer.clone())
            .map_err(|e| FlowError::Config(format!("issuer: {e}")))?;
        let m = Arc::new(
            CoreProviderMetadata::discover_async(issuer, &self.http)
                .await
                .map_err(|e| FlowError::Discovery(e.to_string()))?,
        );
        *kept = Some(m.clone());
        *entry.end_session.lock() = self.end_session_endpoint(provider).await;
        Ok(m)
    }

    /// The provider's `end_session_endpoint`, read from its discovery
    /// document; none if it has none or it cannot be read.
    async fn end_session_endpoint(&self, provider: &OidcProvider) -> Option<String> {
        let url = format!("{}/.well-known/openid-configuration", provider.issuer);
        let doc: Value = self.http.get(url).send().await.ok()?.json().await.ok()?;
        let end = doc.get("end_session_endpoint")?.as_str()?;
        (end.starts_with("https://") || end.starts_with("http://")).then(|| end.to_owned())
    }

    /// Where to send a browser to sign out at the provider too: its end
    /// session endpoint with the session's ID token as the hint, back to
    /// `back` after; none if the provider has no such endpoint.
    pub fn logout_url(&self, provider: &str, id_token: &str, back: &str) -> Option<String> {
        let entry = self.entries.iter().find(|e| e.config.name == provider)?;
        let end = entry.end_session.lock().clone()?;
        let mut url = openidconnect::url::Url::parse(&end).ok()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &entry.config.client_id)
            .append_pair("post_logout_redirect_uri", back);
        Some(url.to_string())
    }

    fn client(
        provider: &OidcProvider,
        metadata: &CoreProviderMetadata,
        redirect: &str,
    ) -> Result<Client, FlowError> {
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(provider.client_id.clone()),
            Some(ClientSecret::new(provider.client_secret().to_owned())),
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect.to_owned())
                .map_err(|e| FlowError::Config(format!("redirect URL: {e}")))?,
        ))
    }

    /// Where to send the browser: the provider's authorization endpoint
    /// with a fresh `state`, `nonce` and PKCE challenge.
    pub async fn authorize(
        &self,
        provider: &OidcProvider,
        redirect: &str,
    ) -> Result<Authorization, FlowError> {
        let metadata = self.metadata(provider, false).await?;
        let client = Self::client(provider, &metadata, redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in provider.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// The code exchanged (with the PKCE verifier), and its ID token
    /// checked against the provider's keys, this client and `nonce`.
    pub async fn finish(
        &self,
        provider: &OidcProvider,
        code: String,
        verifier: &str,
        nonce: &str,
        redirect: &str,
    ) -> Result<Checked, FlowError> {
        let metadata = self.metadata(provider, false).await?;
        let mut client = Self::client(provider, &metadata, redirect)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| FlowError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| FlowError::Exchange(error_chain(&e)))?;
        let id_token = token
            .extra_fields()
            .id_token()
            .ok_or(FlowError::NoIdToken)?
            .clone();
        let nonce = Nonce::new(nonce.to_owned());
        let subject = match Self::subject(&client, &id_token, &nonce) {
            // A key the kept JWKS lacks: the provider may have rotated its
            // keys. Read them again, once.
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let metadata = self.metadata(provider, true).await?;
                client = Self::client(provider, &metadata, redirect)?;
                Self::subject(&client, &id_token, &nonce)
            }
            other => other,
        }
        .map_err(|e| FlowError::IdToken(e.to_string()))?;
        let mut claims =
            payload(&id_token).ok_or_else(|| FlowError::IdToken("unreadable claims".into()))?;
        // A conforming provider may keep the scopes' claims (the name, the
        // e-mail, the groups) out of the ID token when it gives an access
        // token: ask its userinfo endpoint for what is missing.
        // Without the name there is no sign-in, so a failure then refuses
        // it; the groups and the e-mail may be absent for good (a person in
        // no group), so a failure then leaves them out. The ID token's own
        // claims are never replaced.
        let lacks = |claims: &Value, c: &str| claims.get(c).is_none();
        let need_name = lacks(&claims, &provider.username_claim);
        if (need_name
            || lacks(&claims, &provider.groups_claim)
            || lacks(&claims, &provider.email_claim))
            && client.user_info_url().is_some()
        {
            match self
                .user_info(&client, token.access_token().clone(), &subject)
                .await
            {
                Ok(Value::Object(more)) => {
                    if let Some(claims) = claims.as_object_mut() {
                        for (k, v) in more {
                            claims.entry(k).or_insert(v);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if need_name => return Err(e),
                Err(e) => {
                    tracing::warn!(provider = %provider.name, error = %e, "userinfo unread; signing in with the ID token's claims");
                }
            }
        }
        Ok(Checked {
            subject,
            claims,
            id_token: id_token.to_string(),
        })
    }

    /// The userinfo endpoint's claims, asked with the access token; refused
    /// when they are about another subject than the checked ID token's.
    async fn user_info(
        &self,
        client: &Client,
        access_token: openidconnect::AccessToken,
        subject: &str,
    ) -> Result<Value, FlowError> {
        let request = client
            .user_info(
                access_token,
                Some(openidconnect::SubjectIdentifier::new(subject.to_owned())),
            )
            .map_err(|e| FlowError::UserInfo(e.to_string()))?;
        let answer: openidconnect::UserInfoClaims<
            OtherClaims,
            openidconnect::core::CoreGenderClaim,
        > = request
            .request_async(&self.http)
            .await
            .map_err(|e| FlowError::UserInfo(error_chain(&e)))?;
        serde_json::to_value(&answer).map_err(|e| FlowError::UserInfo(e.to_string()))
    }

    fn subject<HA, HD, HI, HR, HT, HU>(
        client: &CoreClient<HA, HD, HI, HR, HT, HU>,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<String, ClaimsVerificationError>
    where
        HA: openidconnect::EndpointState,
        HD: openidconnect::EndpointState,
        HI: openidconnect::EndpointState,
        HR: openidconnect::EndpointState,
        HT: openidconnect::EndpointState,
        HU: openidconnect::EndpointState,
    {
        id_token
            .claims(&client.id_token_verifier(), nonce)
            .map(|c| c.subject().to_string())
    }
}

/// Every claim of an ID token (read only after it was checked): its
/// payload, the JWT's middle part.
fn payload(id_token: &CoreIdToken) -> Option<Value> {
    use base64::Engine as _;
    let compact = id_token.to_string();
    let middle = compact.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(middle.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An error and its causes, on one line (the crate's outer error says
/// little: "Server returned error response").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
