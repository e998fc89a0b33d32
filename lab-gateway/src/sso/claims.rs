//! What a provider's claims make of a person here: whether they may sign
//! in, their user name, role, quota group and e-mail. Pure: the claims are
//! ones the provider signed (checked before they get here).

use serde_json::Value;

use crate::config::OidcProvider;
use crate::store::Role;

/// Who the claims say someone is, as a user here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's `sub`: what ties the person to their user here for
    /// good, whatever their name claim becomes.
    pub subject: String,
    /// The name claim, made one of our user names.
    pub name: String,
    pub email: Option<String>,
    /// Their role; none where the provider's blocks name no role groups
    /// (the role is then ops' to give, and kept).
    pub role: Option<Role>,
    /// Their cohort (quota group; inner none if no group of theirs maps
    /// to one); none where the provider's block maps no cohorts (kept).
    pub group: Option<Option<String>>,
}

/// Why the claims let nobody in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "your account at {provider} has no {claim:?} claim to name you by; ask your administrator"
    )]
    NoName { provider: String, claim: String },
    #[error("your account at {provider} is in none of the groups that may use the Academy Lab")]
    NotAllowed { provider: String },
}

/// The groups the claims list (a list of strings, or one string).
pub fn groups(claims: &Value, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(g)) => vec![g.clone()],
        _ => Vec::new(),
    }
}

/// `claims` (the ID token's, with userinfo's where it had none) as a user.
pub fn identity(
    provider: &OidcProvider,
    subject: &str,
    claims: &Value,
) -> Result<Identity, Refusal> {
    let groups = groups(claims, &provider.groups_claim);
    let member = |list: &[String]| list.iter().any(|g| groups.contains(g));
    if !provider.allowed_groups.is_empty() && !member(&provider.allowed_groups) {
        return Err(Refusal::NotAllowed {
            provider: provider.display_name.clone(),
        });
    }
    let raw = claims
        .get(&provider.username_claim)
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = user_name(raw).ok_or_else(|| Refusal::NoName {
        provider: provider.display_name.clone(),
        claim: provider.username_claim.clone(),
    })?;
    let manages_roles = !(provider.admin_groups.is_empty()
        && provider.ops_groups.is_empty()
        && provider.trainer_groups.is_empty());
    let role = manages_roles.then(|| {
        if member(&provider.admin_groups) {
            Role::Admin
        } else if member(&provider.ops_groups) {
            Role::Ops
        } else if member(&provider.trainer_groups) {
            Role::Trainer
        } else {
            Role::Engineer
        }
    });
    // The first of the person's groups (by name) that maps to a cohort.
    let group = (!provider.cohorts.is_empty()).then(|| {
        provider
            .cohorts
            .iter()
            .find(|(theirs, _)| groups.contains(theirs))
            .map(|(_, ours)| ours.clone())
    });
    let email = claims
        .get(&provider.email_claim)
        .and_then(Value::as_str)
        .filter(|e| e.contains('@'))
        .map(str::to_owned);
    Ok(Identity {
        subject: subject.to_owned(),
        name,
        email,
        role,
        group,
    })
}

/// A name claim as one of our user names: an e-mail address's local part,
/// lower case, any character we do not allow as `-`, no leading dot or
/// dash, at most 64 characters; none if nothing is left.
pub fn user_name(claim: &str) -> Option<String> {
    let base = claim.split('@').next().unwrap_or("").trim();
    let mut name: String = base
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_start_matches(['.', '-']).to_owned();
    name.truncate(64);
    let name = name.trim_end_matches(['.', '-']).to_owned();
    (!name.is_empty() && scheduler::quota::validate_name(&name).is_ok()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> OidcProvider {
        let file: crate::config::OidcFile = toml::from_str(
            r#"
            name = "uni"
            issuer = "https://id.example"
            client_id = "lab"
            client_secret_env = "PATH"
            allowed_groups = ["academy"]
            admin_groups = ["lab-admins"]
            trainer_groups = ["teachers"]
            [cohorts]
            "cohort-7" = "cohort-7"
            "spring" = "spring-26"
            "#,
        )
        .unwrap();
        file.provider().unwrap()
    }

    #[test]
    fn claims_give_a_role_a_cohort_and_a_name() {
        let p = provider();
        let id = identity(
            &p,
            "sub-1",
            &json!({"preferred_username": "Ana.Lee@uni.example", "email": "ana@uni.example",
                    "groups": ["academy", "teachers", "spring", "cohort-7"]}),
        )
        .unwrap();
        assert_eq!(id.name, "ana.lee");
        assert_eq!(id.role, Some(Role::Trainer));
        assert_eq!(id.group, Some(Some("cohort-7".into())), "the first by name");
        assert_eq!(id.email.as_deref(), Some("ana@uni.example"));
        let admin = identity(
            &p,
            "s",
            &json!({"preferred_username": "root", "groups": ["academy", "lab-admins"]}),
        );
        assert_eq!(admin.unwrap().role, Some(Role::Admin));
        // A provider that names no role groups and no cohorts leaves both to ops.
        let mut plain = p.clone();
        (plain.admin_groups, plain.trainer_groups, plain.cohorts) =
            (vec![], vec![], Default::default());
        let id = identity(
            &plain,
            "s",
            &json!({"preferred_username": "bo", "groups": ["academy", "cohort-7"]}),
        )
        .unwrap();
        assert_eq!((id.role, id.group), (None, None));
    }

    #[test]
    fn outsiders_and_nameless_accounts_are_refused() {
        let p = provider();
        assert!(matches!(
            identity(
                &p,
                "s",
                &json!({"preferred_username": "eve", "groups": ["visitors"]})
            ),
            Err(Refusal::NotAllowed { .. })
        ));
        assert!(matches!(
            identity(&p, "s", &json!({"preferred_username": "eve"})),
            Err(Refusal::NotAllowed { .. })
        ));
        assert!(matches!(
            identity(
                &p,
                "s",
                &json!({"preferred_username": "...", "groups": "academy"})
            ),
            Err(Refusal::NoName { .. })
        ));
        assert_eq!(user_name("José María"), Some("jos--mar-a".into()));
        assert_eq!(user_name(".hidden"), Some("hidden".into()));
        assert_eq!(user_name("@x"), None);
    }
}
