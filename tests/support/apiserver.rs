//! A real control plane for integration tests: etcd and kube-apiserver on loopback, with
//! certificates from `openssl`, free ports, a temp dir and our CRDs installed.
//!
//! Everything is torn down in `Drop` (processes killed by PID, temp dir removed), so a
//! panicking test leaves nothing behind. Binaries come from `controlplane/build.sh`.

#![allow(dead_code)] // reason: each test binary uses a different subset of the harness

#[path = "apiserver_certs.rs"]
mod apiserver_certs;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize as _;

use apiserver_certs::ControlPlaneCerts;

const BUILD_HINT: &str =
    "controlplane/build.sh (≈ 10 min once; scripts/test.sh runs it before the tests)";

/// Repository root (tests run with the package directory as working directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `controlplane/build.sh` caches the binaries: `$UNBOUNDED_CP_BIN_DIR`, else the
/// versioned cache directory named from the versions pinned in build.sh.
pub fn binary_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("UNBOUNDED_CP_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let script = fs::read_to_string(repo_root().join("controlplane/build.sh"))
        .expect("controlplane/build.sh is missing");
    let pinned = |key: &str| {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= not found in controlplane/build.sh"))
            .to_string()
    };
    let root = std::env::var("UNBOUNDED_CP_CACHE")
        .unwrap_or_else(|_| "/var/cache/unbounded-net/controlplane".into());
    PathBuf::from(root).join(format!(
        "k8s-{}-etcd-{}",
        pinned("K8S_VERSION"),
        pinned("ETCD_VERSION")
    ))
}

/// A child process killed (by its PID) and reaped on drop.
struct ProcessGuard {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ProcessGuard {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Self {
        let file = fs::File::create(&log).expect("create log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log file"))
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}; build it with {BUILD_HINT}"));
        Self { name, child, log }
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                log_tail(&self.log)
            )),
            _ => None,
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let base = std::env::temp_dir();
        for attempt in 0..100u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let p = base.join(format!("{prefix}-{}-{nanos}-{attempt}", std::process::id()));
            if fs::create_dir(&p).is_ok() {
                return Self(p);
            }
        }
        panic!("cannot create a temp dir under {}", base.display());
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A port the kernel just handed out on loopback (released before the server binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// etcd + kube-apiserver, alive until dropped. Field order is drop order: the API server
/// goes first, then etcd, then the directory holding their data.
pub struct ControlPlane {
    apiserver: ProcessGuard,
    etcd: ProcessGuard,
    dir: TempDir,
    pub url: String,
    pub kubeconfig: PathBuf,
    bin: PathBuf,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, waits until the API is ready and installs the CRDs
    /// from `deploy/crds/crds.yaml`. Panics (after cleaning up) with a clear message when
    /// the binaries are missing or the control plane does not come up.
    pub async fn start() -> Self {
        let bin = binary_dir();
        for b in ["etcd", "kube-apiserver", "kubectl"] {
            assert!(
                bin.join(b).is_file(),
                "{} not found; build the control plane with: {BUILD_HINT}",
                bin.join(b).display()
            );
        }
        let dir = TempDir::new("unbounded-cp");
        let certs = ControlPlaneCerts::generate(&dir.0).expect("generate certificates");

        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(bin.join("etcd"));
        cmd.args([
            "--name=test",
            &format!("--data-dir={}", dir.0.join("etcd").display()),
            &format!("--listen-client-urls={etcd_url}"),
            &format!("--advertise-client-urls={etcd_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=test={peer_url}"),
            // Test data is disposable; fsync would dominate on shared CI disks.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        let etcd = ProcessGuard::spawn("etcd", cmd, dir.0.join("etcd.log"));

        let p = |path: &PathBuf| path.display().to_string();
        let mut cmd = Command::new(bin.join("kube-apiserver"));
        cmd.args([
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            // No kubernetes Service endpoints: a loopback address may not be published there.
            "--endpoint-reconciler-type=none".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", dir.0.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", p(&certs.serving_cert)),
            format!("--tls-private-key-file={}", p(&certs.serving_key)),
            format!("--client-ca-file={}", p(&certs.ca_cert)),
            format!("--service-account-key-file={}", p(&certs.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&certs.sa_key)),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--authorization-mode=RBAC".into(),
            // As on real clusters: the node agent DaemonSet is privileged.
            "--allow-privileged=true".into(),
            // One client hammers this server in benchmarks; fairness queuing only adds noise.
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]);
        let apiserver = ProcessGuard::spawn("kube-apiserver", cmd, dir.0.join("apiserver.log"));

        let url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.0.join("kubeconfig");
        fs::write(&kubeconfig, kubeconfig_yaml(&url, &certs)).expect("write kubeconfig");
        let mut cp = Self {
            apiserver,
            etcd,
            dir,
            url,
            kubeconfig,
            bin,
        };
        cp.wait_ready(Duration::from_secs(90)).await;
        cp.install_crds().await;
        cp
    }

    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    pub fn kubectl_path(&self) -> PathBuf {
        self.bin.join("kubectl")
    }

    /// An admin (system:masters) client.
    pub async fn client(&self) -> Client {
        self.client_with(|_| {}).await
    }

    /// A client that impersonates `user` in `groups` (RBAC and admission see that user).
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        self.client_with(|c| {
            c.auth_info.impersonate = Some(user.to_string());
            c.auth_info.impersonate_groups = Some(groups.clone());
        })
        .await
    }

    /// A kubeconfig file for the admin certificate impersonating `user` in `groups`.
    pub fn kubeconfig_as(&self, user: &str, groups: &[&str]) -> PathBuf {
        let text = fs::read_to_string(&self.kubeconfig).expect("read kubeconfig");
        let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
        let text = text.replace(
            "    client-key:",
            &format!(
                "    as: \"{user}\"\n    as-groups: [{}]\n    client-key:",
                groups.join(", ")
            ),
        );
        let path = self
            .dir
            .0
            .join(format!("kubeconfig-{}", user.replace(':', "_")));
        fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// A client that authenticates with a bearer token (e.g. a service-account token).
    pub async fn client_with_token(&self, token: &str) -> Client {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: bearer\n  user:\n    token: {token}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: bearer\n\
             current-context: test\n",
            self.url,
            self.dir.0.join("ca.crt").display()
        );
        let kc = Kubeconfig::from_yaml(&text).expect("token kubeconfig");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("token kubeconfig to client config");
        Client::try_from(config).expect("build kube client")
    }

    async fn client_with(&self, f: impl FnOnce(&mut Config)) -> Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig to client config");
        f(&mut config);
        Client::try_from(config).expect("build kube client")
    }

    /// Runs the built kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.kubectl_path())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last_err = String::from("not tried");
        loop {
            for guard in [&mut self.etcd, &mut self.apiserver] {
                if let Some(msg) = guard.exited() {
                    panic!("control plane died while starting: {msg}");
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "kube-apiserver not ready after {timeout:?}: {last_err}\napiserver log tail:\n{}",
                    log_tail(&self.apiserver.log)
                );
            }
            // The default namespace and the bootstrap RBAC roles are created by post-start
            // hooks: once both are visible the server is fully usable.
            let client = self.client().await;
            let ns = Api::<Namespace>::all(client.clone()).get("default").await;
            let role = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client)
                .get("cluster-admin")
                .await;
            match (ns, role) {
                (Ok(_), Ok(_)) => return,
                (Err(e), _) | (_, Err(e)) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates every CRD in `deploy/crds/crds.yaml` and waits until each is Established.
    pub async fn install_crds(&self) {
        let text = fs::read_to_string(repo_root().join("deploy/crds/crds.yaml"))
            .expect("read deploy/crds/crds.yaml");
        let api = Api::<CustomResourceDefinition>::all(self.client().await);
        let mut names = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).expect("parse CRD YAML");
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition =
                serde_yaml::from_value(value).expect("CRD YAML is a CustomResourceDefinition");
            let name = crd.metadata.name.clone().expect("CRD has a name");
            api.create(&PostParams::default(), &crd)
                .await
                .unwrap_or_else(|e| panic!("create CRD {name}: {e}"));
            names.push(name);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for name in names {
            loop {
                let crd = api.get(&name).await.expect("get CRD");
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                assert!(Instant::now() < deadline, "CRD {name} never Established");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn kubeconfig_yaml(url: &str, certs: &ControlPlaneCerts) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    \
         certificate-authority: {}\nusers:\n- name: admin\n  user:\n    client-certificate: {}\n    \
         client-key: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n\
         current-context: test\n",
        certs.ca_cert.display(),
        certs.admin_cert.display(),
        certs.admin_key.display()
    )
}
