//! Certificates and keys for a throw-away control plane, made with the `openssl` CLI:
//! a CA, the API server's serving certificate (SAN 127.0.0.1, localhost), an admin client
//! certificate in `system:masters`, and the service-account signing key pair.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of everything generated under one directory.
pub struct ControlPlaneCerts {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl (install the openssl package): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// EC P-256 keys: quick to generate, accepted by the API server and by rustls.
fn ec_key(dir: &Path, name: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ],
    )
}

fn signed_cert(dir: &Path, name: &str, subject: &str, ext: &str) -> Result<(), String> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let ext_file = format!("{name}.ext");
    ec_key(dir, &key)?;
    std::fs::write(dir.join(&ext_file), ext).map_err(|e| e.to_string())?;
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &crt,
        ],
    )
}

impl ControlPlaneCerts {
    pub fn generate(dir: &Path) -> Result<Self, String> {
        ec_key(dir, "ca.key")?;
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=unbounded-net-test-ca",
                "-days",
                "2",
                "-out",
                "ca.crt",
            ],
        )?;
        signed_cert(
            dir,
            "serving",
            "/CN=kube-apiserver",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        signed_cert(
            dir,
            "admin",
            "/O=system:masters/CN=unbounded-net-test-admin",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        )?;
        ec_key(dir, "sa.key")?;
        openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        Ok(Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("serving.crt"),
            serving_key: dir.join("serving.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        })
    }
}
