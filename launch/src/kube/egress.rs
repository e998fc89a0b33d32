//! Where a kernel pod may connect to: nothing but DNS by default, and the
//! academy's package mirrors where `[kubernetes] egress` names them. An
//! offline pod (grading) gets none of this: the offline NetworkPolicy
//! (`pod::build_offline_network_policy`) allows it no egress at all.
//!
//! A kernel runs code anyone in a cohort can write, so its pod's egress is
//! an allow-list (issue 13, item 10): cloud metadata endpoints (which hand
//! out the node's credentials), the API server and internal services are
//! not on it. A mirror's IP block, however broad, always excepts the
//! metadata endpoints; a block that lies inside one is refused when
//! lab.toml is read. The gateway never needs a kernel to connect to it: it
//! connects to the kernel's ports, and replies on those connections are
//! allowed by every NetworkPolicy implementation.

use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

/// An IP block such as `10.20.0.0/16`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// The cloud metadata endpoint (AWS, GCP, Azure, OpenStack, ...).
pub const METADATA_V4: Cidr = Cidr {
    addr: IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254)),
    prefix: 32,
};
/// AWS's IPv6 metadata endpoint, `fd00:ec2::254`.
pub const METADATA_V6: Cidr = Cidr {
    addr: IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    prefix: 128,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("{0:?} is not an IP block (write it as 10.20.0.0/16)")]
    NotCidr(String),
    #[error("{given} has host bits set; the block is {block}")]
    HostBits { given: String, block: Cidr },
    #[error("{0} lies inside the cloud metadata endpoint {1}, which kernels may never reach")]
    Metadata(Cidr, Cidr),
    #[error("port 0 is not a port")]
    PortZero,
}

impl Cidr {
    fn bits(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// Whether every address of `other` is in this block.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.bits() == other.bits()
            && other.prefix >= self.prefix
            && Self::masked(other.addr, self.prefix) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = EgressError;

    fn from_str(s: &str) -> Result<Cidr, EgressError> {
        let bad = || EgressError::NotCidr(s.to_owned());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(bad());
        }
        let block = Cidr {
            addr: Cidr::masked(addr, prefix),
            prefix,
        };
        if block.addr != addr {
            return Err(EgressError::HostBits {
                given: s.to_owned(),
                block,
            });
        }
        Ok(block)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One `[[kubernetes.egress]]` entry: kernels may open TCP connections to
/// `cidr` on `ports` (every port when empty), e.g. the academy's crates and
/// PyPI mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct EgressRule {
    pub cidr: Cidr,
    pub ports: Vec<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    cidr: Cidr,
    #[serde(default)]
    ports: Vec<u16>,
}

impl TryFrom<RawRule> for EgressRule {
    type Error = EgressError;

    fn try_from(r: RawRule) -> Result<EgressRule, EgressError> {
        EgressRule::new(r.cidr, r.ports)
    }
}

impl EgressRule {
    /// Refuses a block inside a metadata endpoint (it could not except it).
    pub fn new(cidr: Cidr, ports: Vec<u16>) -> Result<EgressRule, EgressError> {
        if let Some(m) = [METADATA_V4, METADATA_V6]
            .into_iter()
            .find(|m| m.contains(&cidr))
        {
            return Err(EgressError::Metadata(cidr, m));
        }
        if ports.contains(&0) {
            return Err(EgressError::PortZero);
        }
        Ok(EgressRule { cidr, ports })
    }

    /// The rule as a NetworkPolicy egress rule, metadata endpoints excepted.
    fn to_policy(&self) -> NetworkPolicyEgressRule {
        let except: Vec<String> = [METADATA_V4, METADATA_V6]
            .iter()
            .filter(|m| self.cidr.contains(m))
            .map(Cidr::to_string)
            .collect();
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: self.cidr.to_string(),
                    except: (!except.is_empty()).then_some(except),
                }),
                ..Default::default()
            }]),
            ports: (!self.ports.is_empty()).then(|| {
                self.ports
                    .iter()
                    .map(|p| NetworkPolicyPort {
                        protocol: Some("TCP".into()),
                        port: Some(IntOrString::Int(i32::from(*p))),
                        end_port: None,
                    })
                    .collect()
            }),
        }
    }
}

/// The egress rules of a kernel pod: DNS to the cluster's kube-dns pods,
/// then one rule per configured mirror. Shared by the policy the backend
/// puts in each user namespace and (checked by lab-gateway's manifest
/// tests) the one in `k8s/base/networkpolicy.yaml`.
pub fn kernel_egress(mirrors: &[EgressRule]) -> Vec<NetworkPolicyEgressRule> {
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(
                    [(
                        "kubernetes.io/metadata.name".to_owned(),
                        "kube-system".to_owned(),
                    )]
                    .into(),
                ),
                ..Default::default()
            }),
            pod_selector: Some(LabelSelector {
                match_labels: Some([("k8s-app".to_owned(), "kube-dns".to_owned())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(
            ["UDP", "TCP"]
                .iter()
                .map(|proto| NetworkPolicyPort {
                    protocol: Some((*proto).into()),
                    port: Some(IntOrString::Int(53)),
                    end_port: None,
                })
                .collect(),
        ),
    };
    std::iter::once(dns)
        .chain(mirrors.iter().map(EgressRule::to_policy))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Result<EgressRule, String> {
        #[derive(Deserialize)]
        struct T {
            egress: Vec<EgressRule>,
        }
        toml::from_str::<T>(toml_text)
            .map(|t| t.egress[0].clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_broad_mirror_block_still_excepts_the_metadata_endpoint() {
        let r = rule("egress = [{ cidr = \"0.0.0.0/0\", ports = [443] }]").unwrap();
        let p = serde_json::to_value(kernel_egress(&[r])).unwrap();
        assert_eq!(
            p[1],
            serde_json::json!({
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
                "ports": [{"protocol": "TCP", "port": 443}],
            })
        );
        let r = rule("egress = [{ cidr = \"169.254.0.0/16\" }]").unwrap();
        let p = serde_json::to_value(kernel_egress(&[r])).unwrap();
        assert_eq!(p[1]["to"][0]["ipBlock"]["except"][0], "169.254.169.254/32");
        assert!(p[1].get("ports").is_none());
        let r = rule("egress = [{ cidr = \"fd00::/8\", ports = [80] }]").unwrap();
        let p = serde_json::to_value(kernel_egress(&[r])).unwrap();
        assert_eq!(p[1]["to"][0]["ipBlock"]["except"][0], "fd00:ec2::254/128");
        // A narrow mirror block needs no exception.
        let r = rule("egress = [{ cidr = \"10.20.30.0/24\", ports = [443] }]").unwrap();
        let p = serde_json::to_value(kernel_egress(&[r])).unwrap();
        assert!(p[1]["to"][0]["ipBlock"].get("except").is_none());
    }

    #[test]
    fn bad_blocks_are_refused_with_the_reason() {
        let e = rule("egress = [{ cidr = \"169.254.169.254/32\" }]").unwrap_err();
        assert!(e.contains("metadata endpoint"), "{e}");
        let e = rule("egress = [{ cidr = \"10.0.0.1/8\" }]").unwrap_err();
        assert!(e.contains("host bits set; the block is 10.0.0.0/8"), "{e}");
        for bad in ["10.0.0.0", "10.0.0.0/33", "mirror.example/24", "::/129"] {
            let e = rule(&format!("egress = [{{ cidr = {bad:?} }}]")).unwrap_err();
            assert!(e.contains("is not an IP block"), "{bad}: {e}");
        }
        let e = rule("egress = [{ cidr = \"10.0.0.0/8\", ports = [0] }]").unwrap_err();
        assert!(e.contains("port 0"), "{e}");
        let e = rule("egress = [{ cidr = \"10.0.0.0/8\", port = 1 }]").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
