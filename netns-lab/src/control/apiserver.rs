//! Kube mode's API server: etcd and kube-apiserver (the binaries `controlplane/build.sh`
//! caches) inside the management namespace, certificates made with `openssl`, our CRDs and
//! the controller's namespace installed with kubectl.

pub mod binaries;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::mgmt::API_ADDR;
use super::process::{LabProcess, StartError};
use crate::cmd::{self, CmdError};
use crate::registry::Registry;

pub const API_PORT: u16 = 6443;

#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error(transparent)]
    Binaries(#[from] binaries::BinariesError),
    #[error("certificates: {0} (is openssl installed?)")]
    Certs(CmdError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("the API server did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
    #[error("installing the CRDs: {0}")]
    Crds(CmdError),
    #[error("{0}")]
    Io(String),
}

/// etcd + kube-apiserver of one lab. Field order is drop order: API server first.
pub struct ApiServer {
    apiserver: LabProcess,
    etcd: LabProcess,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), ApiServerError> {
    let mut full = vec!["-c", "cd \"$0\" && exec openssl \"$@\""];
    let d = dir.display().to_string();
    full.push(&d);
    full.extend_from_slice(args);
    cmd::run("sh", &full)
        .map(|_| ())
        .map_err(ApiServerError::Certs)
}

fn signed(dir: &Path, name: &str, subject: &str, ext: &str) -> Result<(), ApiServerError> {
    let (key, csr, crt, extf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    ec_key(dir, &key)?;
    std::fs::write(dir.join(&extf), ext).map_err(|e| ApiServerError::Io(e.to_string()))?;
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
            &extf,
            "-out",
            &crt,
        ],
    )
}

fn ec_key(dir: &Path, out: &str) -> Result<(), ApiServerError> {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            out,
        ],
    )
}

fn certificates(dir: &Path) -> Result<(), ApiServerError> {
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
            "/CN=netns-lab-ca",
            "-days",
            "2",
            "-out",
            "ca.crt",
        ],
    )?;
    signed(
        dir,
        "serving",
        "/CN=kube-apiserver",
        &format!("extendedKeyUsage=serverAuth\nsubjectAltName=IP:{API_ADDR},IP:127.0.0.1\n"),
    )?;
    signed(
        dir,
        "admin",
        "/O=system:masters/CN=netns-lab",
        "extendedKeyUsage=clientAuth\n",
    )?;
    ec_key(dir, "sa.key")?;
    openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])
}

impl ApiServer {
    /// Starts etcd and the API server in `netns` (the management namespace), waits until it
    /// is ready and installs the CRDs from `deploy/crds/crds.yaml`.
    pub fn start(reg: &Registry, netns: &str, dir: &Path) -> Result<ApiServer, ApiServerError> {
        // Normally done before the lab was built (`Lab::up`); instant then.
        let bin = binaries::ensure_upstream()?;
        std::fs::create_dir_all(dir).map_err(|e| ApiServerError::Io(e.to_string()))?;
        certificates(dir)?;
        let p = |f: &str| dir.join(f).display().to_string();
        // etcd listens on the management namespace's own loopback.
        let etcd = LabProcess::start(
            reg,
            "etcd",
            Some(netns),
            &bin.join("etcd"),
            &[
                "--name=lab".into(),
                format!("--data-dir={}", p("etcd")),
                "--listen-client-urls=http://127.0.0.1:2379".into(),
                "--advertise-client-urls=http://127.0.0.1:2379".into(),
                "--listen-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-cluster=lab=http://127.0.0.1:2380".into(),
                // Lab data is disposable; fsync would dominate on shared CI disks.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            &dir.join("etcd.log"),
        )?;
        let apiserver = LabProcess::start(
            reg,
            "kube-apiserver",
            Some(netns),
            &bin.join("kube-apiserver"),
            &[
                "--etcd-servers=http://127.0.0.1:2379".into(),
                format!("--bind-address={API_ADDR}"),
                format!("--advertise-address={API_ADDR}"),
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={API_PORT}"),
                format!("--cert-dir={}", p("apiserver-certs")),
                format!("--tls-cert-file={}", p("serving.crt")),
                format!("--tls-private-key-file={}", p("serving.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--authorization-mode=RBAC".into(),
                "--allow-privileged=true".into(),
                "--enable-priority-and-fairness=false".into(),
                "--profiling=false".into(),
            ],
            &dir.join("apiserver.log"),
        )?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: lab, cluster: {{server: \"https://{API_ADDR}:{API_PORT}\", certificate-authority: {ca}}}}}]\nusers: [{{name: admin, user: {{client-certificate: {crt}, client-key: {key}}}}}]\ncontexts: [{{name: lab, context: {{cluster: lab, user: admin}}}}]\ncurrent-context: lab\n",
                ca = p("ca.crt"),
                crt = p("admin.crt"),
                key = p("admin.key"),
            ),
        )
        .map_err(|e| ApiServerError::Io(e.to_string()))?;
        let mut s = ApiServer {
            apiserver,
            etcd,
            kubeconfig,
            kubectl: bin.join("kubectl"),
        };
        s.wait_ready(Duration::from_secs(90))?;
        s.kubectl(&[
            "apply",
            "-f",
            &binaries::repo_root()
                .join("deploy/crds/crds.yaml")
                .display()
                .to_string(),
        ])
        .map_err(ApiServerError::Crds)?;
        s.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ])
        .map_err(ApiServerError::Crds)?;
        s.kubectl(&["create", "namespace", "unbounded-net"])
            .map_err(ApiServerError::Crds)?;
        Ok(s)
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String, CmdError> {
        let kc = format!("--kubeconfig={}", self.kubeconfig.display());
        let mut full = vec![kc.as_str()];
        full.extend_from_slice(args);
        cmd::stdout(&self.kubectl.display().to_string(), &full)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), ApiServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            for p in [&mut self.etcd, &mut self.apiserver] {
                if let Some(why) = p.exited() {
                    return Err(ApiServerError::NotReady(timeout, why));
                }
            }
            match self.kubectl(&["get", "--raw=/readyz"]) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(ApiServerError::NotReady(timeout, e.to_string()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }
}
