//! Reading the connection file a launcher hands the kernel.
//!
//! The file is the one Jupyter writes (`ip`, five ports, `key`,
//! `signature_scheme`). We accept only `hmac-sha256`, the scheme every Jupyter
//! client uses, so that a kernel never silently runs unsigned by mistake.

use std::path::Path;

use jupyter_protocol::ConnectionInfo;

use crate::KernelError;

/// A fresh loopback connection (five free ports, a random key), for
/// launching a kernel of our own: `academy-kernel execute`, tests, benches.
pub async fn fresh_loopback(kernel_name: Option<&str>) -> std::io::Result<ConnectionInfo> {
    let ports =
        jupyter_zmq_client::peek_ports(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5)
            .await
            .map_err(std::io::Error::other)?;
    Ok(ConnectionInfo {
        ip: "127.0.0.1".into(),
        transport: jupyter_protocol::Transport::TCP,
        shell_port: ports[0],
        iopub_port: ports[1],
        stdin_port: ports[2],
        control_port: ports[3],
        hb_port: ports[4],
        key: uuid::Uuid::new_v4().to_string(),
        signature_scheme: "hmac-sha256".into(),
        kernel_name: kernel_name.map(str::to_owned),
    })
}

/// Reads and validates a connection file.
pub fn read_connection_file(path: &Path) -> Result<ConnectionInfo, KernelError> {
    let text = std::fs::read_to_string(path).map_err(|source| KernelError::ConnectionFile {
        path: path.to_owned(),
        source,
    })?;
    let info: ConnectionInfo =
        serde_json::from_str(&text).map_err(|source| KernelError::ConnectionFileFormat {
            path: path.to_owned(),
            source,
        })?;
    if !info.key.is_empty() && info.signature_scheme != "hmac-sha256" {
        return Err(KernelError::SignatureScheme {
            path: path.to_owned(),
            scheme: info.signature_scheme.clone(),
        });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_an_unknown_signature_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        std::fs::write(
            &path,
            r#"{"ip":"127.0.0.1","transport":"tcp","shell_port":1,"iopub_port":2,
               "stdin_port":3,"control_port":4,"hb_port":5,"key":"k",
               "signature_scheme":"hmac-md5"}"#,
        )
        .unwrap();
        let err = read_connection_file(&path).unwrap_err();
        assert!(err.to_string().contains("hmac-md5"), "{err}");
    }

    #[test]
    fn reports_a_missing_file_with_its_path() {
        let err = read_connection_file(Path::new("/nonexistent/kernel.json")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/kernel.json"),
            "{err}"
        );
    }
}
