//! Deliberately broken scenarios fail with the right message at the right line and column.
//!
//! Each case edits a valid scenario; the replacement text carries a `⟦` marker where the
//! error must point. The marker is removed before parsing and its position (1-based line and
//! column) is the expected location.

use unbounded_scenario::{Diagnostic, Scenario};

const MARK: char = '⟦';

const BASE: &str = r#"kernel: host
topology:
  sites:
    - {name: site-a, underlay: [10.1.0.0/24]}
    - {name: site-b, underlay: [10.2.0.0/24]}
  nodes:
    - {name: a-w1, site: site-a, internalIP: 10.1.0.11}
    - {name: a-gw1, site: site-a, internalIP: 10.1.0.21, externalIP: 203.0.113.1, role: gateway}
    - {name: b-w1, site: site-b, internalIP: 10.2.0.11}
    - {name: b-gw1, site: site-b, internalIP: 10.2.0.21, externalIP: 203.0.113.2, role: gateway}
  links:
    - {name: internet, kind: internet, sites: [site-a, site-b]}
    - {name: private, kind: private, sites: [site-a, site-b]}
objects:
  - apiVersion: net.unbounded-cloud.io/v1alpha1
    kind: Site
    metadata: {name: site-a}
    spec: {nodeCidrs: [10.1.0.0/24]}
  - apiVersion: net.unbounded-cloud.io/v1alpha1
    kind: GatewayPool
    metadata: {name: pool}
    spec: {type: External, nodeSelector: {unbounded-cloud.io/unbounded-net-gateway: "true"}}
  - apiVersion: net.unbounded-cloud.io/v1alpha1
    kind: SiteGatewayPoolAssignment
    metadata: {name: a}
    spec: {sites: [site-a], gatewayPools: [pool]}
flows:
  - {name: f, from: a-w1, to: b-w1, protocol: udp, rate: 100}
timeline:
  - {at: 5s, name: kill, gatewayCrash: a-gw1}
  - {at: 9s, gatewayRestart: a-gw1}
expect:
  - connectivity: {from: all, to: all, within: 30s}
  - path: {flow: f, within: 30s, hops: [{to: b-w1, encap: None}]}
  - failover: {flow: f, after: kill, within: 1s}
"#;

struct Case {
    what: &'static str,
    edits: &'static [(&'static str, &'static str)],
    message: &'static str,
}

const CASES: &[Case] = &[
    // ---- unknown fields ----
    Case {
        what: "unknown top-level field",
        edits: &[("kernel: host\n", "kernel: host\n⟦colour: blue\n")],
        message: "unknown field `colour`",
    },
    Case {
        what: "unknown node field",
        edits: &[(
            "internalIP: 10.1.0.11}",
            "internalIP: 10.1.0.11, ⟦ipAddress: 1}",
        )],
        message: "unknown field `ipAddress`",
    },
    Case {
        what: "unknown field inside a Kubernetes object",
        edits: &[(
            "gatewayPools: [pool]}",
            "gatewayPools: [pool], tunnelProtocl: ⟦WireGuard}",
        )],
        message: "unknown field `tunnelProtocl`",
    },
    Case {
        what: "unknown event",
        edits: &[(
            "{at: 9s, gatewayRestart: a-gw1}",
            "{at: 9s, ⟦gatewayReboot: a-gw1}",
        )],
        message: "unknown timeline key `gatewayReboot`",
    },
    Case {
        what: "unknown expectation",
        edits: &[("  - failover: {", "  - ⟦failsafe: {")],
        message: "unknown expectation `failsafe`",
    },
    // ---- bad values ----
    Case {
        what: "duration with a spelled-out unit",
        edits: &[("within: 1s}", "within: ⟦1 sec}")],
        message: "`1 sec` is not a duration",
    },
    Case {
        what: "duration without a unit",
        edits: &[("{at: 5s,", "{at: ⟦5,")],
        message: "duration `5` has no unit: write `5s` or `5ms`",
    },
    Case {
        what: "subnet with host bits",
        edits: &[("underlay: [10.1.0.0/24]", "underlay: [⟦10.1.0.5/24]")],
        message: "has host bits set: write the network address `10.1.0.0/24`",
    },
    Case {
        what: "encapsulation the host kernel lacks",
        edits: &[("encap: None", "encap: ⟦GENEVE")],
        message: "set `kernel: vm`",
    },
    // ---- bad references ----
    Case {
        what: "node in an unknown site",
        edits: &[("{name: a-w1, site: site-a,", "{name: a-w1, site: ⟦site-c,")],
        message: "unknown site `site-c`: use one of site-a, site-b",
    },
    Case {
        what: "link to an unknown site",
        edits: &[(
            "kind: private, sites: [site-a, site-b]",
            "kind: private, sites: [site-a, ⟦site-z]",
        )],
        message: "unknown site `site-z`",
    },
    Case {
        what: "event naming an unknown node",
        edits: &[("gatewayCrash: a-gw1", "gatewayCrash: ⟦a-gw9")],
        message: "unknown node `a-gw9`",
    },
    Case {
        what: "expectation naming an unknown flow",
        edits: &[("path: {flow: f,", "path: {flow: ⟦g,")],
        message: "unknown flow `g`",
    },
    Case {
        what: "expectation naming an unknown node",
        edits: &[("connectivity: {from: all,", "connectivity: {from: ⟦a-w9,")],
        message: "unknown node or site `a-w9`",
    },
    Case {
        what: "expectation after an unknown event",
        edits: &[("after: kill,", "after: ⟦kil,")],
        message: "no timeline entry is named `kil`",
    },
    Case {
        what: "assignment naming an unknown gateway pool",
        edits: &[("gatewayPools: [pool]}", "gatewayPools: [⟦pools]}")],
        message: "names GatewayPool `pools`, which no GatewayPool in `objects` defines",
    },
    Case {
        what: "object the CRD schema rejects",
        edits: &[(
            "gatewayPools: [pool]}",
            "gatewayPools: [pool], tunnelMTU: ⟦100}",
        )],
        message: "SiteGatewayPoolAssignment `a`: spec.tunnelMTU: Invalid value",
    },
    Case {
        what: "duplicate in a set-typed list of an object",
        edits: &[("gatewayPools: [pool]}", "gatewayPools: [pool, ⟦pool]}")],
        message: "SiteGatewayPoolAssignment `a`: spec.gatewayPools[1]: Duplicate value",
    },
    Case {
        what: "object a CEL rule rejects",
        edits: &[(
            "spec: {nodeCidrs: [10.1.0.0/24]}",
            "spec: {nodeCidrs: ⟦[10.1.0.0/33]}",
        )],
        message: "Site `site-a`: spec.nodeCidrs: Invalid value: nodeCidrs entries must be CIDRs",
    },
    Case {
        what: "object of a kind the controller owns",
        edits: &[("    kind: Site\n", "    kind: ⟦SiteNodeSlice\n")],
        message: "SiteNodeSlice is written only by the controller",
    },
    Case {
        what: "noPlaintext on a private link",
        edits: &[(
            "  - failover:",
            "  - noPlaintext: {links: [⟦private]}\n  - failover:",
        )],
        message: "link `private` is private",
    },
    Case {
        what: "control plane in an unknown site",
        edits: &[("  links:\n", "  controlPlaneSite: ⟦site-q\n  links:\n")],
        message: "unknown site `site-q`: use one of site-a, site-b",
    },
    // ---- impossible topologies ----
    Case {
        what: "node IP outside its site's underlay",
        edits: &[("internalIP: 10.1.0.11}", "internalIP: ⟦10.9.0.11}")],
        message: "internalIP 10.9.0.11 is outside the underlay of site `site-a`",
    },
    Case {
        what: "node on the site router's address",
        edits: &[("internalIP: 10.1.0.11}", "internalIP: ⟦10.1.0.1}")],
        message: "is taken by the site router",
    },
    Case {
        what: "duplicate IP",
        edits: &[(
            "internalIP: 10.2.0.11}",
            "internalIP: 10.2.0.11, externalIP: ⟦203.0.113.1}",
        )],
        message: "address 203.0.113.1 is already used by node `a-gw1`",
    },
    Case {
        what: "duplicate node name",
        edits: &[("{name: b-gw1,", "{name: ⟦b-w1,")],
        message: "node `b-w1` is defined twice",
    },
    Case {
        what: "gateway without external IP at an internet-only site",
        edits: &[
            (
                "internalIP: 10.1.0.21, externalIP: 203.0.113.1, role: gateway}",
                "internalIP: 10.1.0.21, role: ⟦gateway}",
            ),
            (
                "    - {name: private, kind: private, sites: [site-a, site-b]}\n",
                "",
            ),
        ],
        message: "gateway `a-gw1` has no externalIP, but site `site-a` is reached only over the internet",
    },
    Case {
        what: "private link between a site and itself",
        edits: &[(
            "kind: private, sites: [site-a, site-b]",
            "kind: private, sites: [site-a, ⟦site-a]",
        )],
        message: "a private link cannot join site `site-a` to itself",
    },
    Case {
        what: "overlapping underlay subnets",
        edits: &[(
            "underlay: [10.2.0.0/24]",
            "underlay: [10.2.0.0/24, ⟦10.1.0.0/16]",
        )],
        message: "underlay 10.1.0.0/16 of site `site-b` overlaps 10.1.0.0/24 of site `site-a`",
    },
    // ---- impossible timelines and expectations ----
    Case {
        what: "timeline out of order",
        edits: &[("{at: 9s,", "{at: ⟦1s,")],
        message: "timeline is out of order: 1s comes after 5s",
    },
    Case {
        what: "crashing a worker",
        edits: &[("gatewayCrash: a-gw1", "gatewayCrash: ⟦a-w1")],
        message: "node `a-w1` is a worker",
    },
    Case {
        what: "restarting a gateway that is up",
        edits: &[
            ("gatewayCrash: a-gw1", "gatewayCrash: b-gw1"),
            ("gatewayRestart: a-gw1", "gatewayRestart: ⟦a-gw1"),
        ],
        message: "gateway `a-gw1` is not crashed here",
    },
    Case {
        what: "joining a node that is already present",
        edits: &[(
            "  - {at: 9s, gatewayRestart: a-gw1}\n",
            "  - {at: 9s, gatewayRestart: a-gw1}\n  - {at: 10s, nodeJoin: ⟦b-w1}\n",
        )],
        message: "node `b-w1` is already in the cluster here: set `present: false`",
    },
    Case {
        what: "partition naming an unknown site",
        edits: &[(
            "  - {at: 9s, gatewayRestart: a-gw1}\n",
            "  - {at: 9s, gatewayRestart: a-gw1}\n  - {at: 10s, partition: [[site-a], [⟦site-x]]}\n",
        )],
        message: "unknown site or node `site-x`",
    },
    Case {
        what: "healing a partition that never happened",
        edits: &[(
            "  - {at: 9s, gatewayRestart: a-gw1}\n",
            "  - {at: 9s, gatewayRestart: a-gw1}\n  - {at: 10s, partitionHeal: ⟦p1}\n",
        )],
        message: "no earlier partition is named `p1`",
    },
    Case {
        what: "healing a link that is up",
        edits: &[(
            "  - {at: 9s, gatewayRestart: a-gw1}\n",
            "  - {at: 9s, gatewayRestart: a-gw1}\n  - {at: 10s, linkHeal: ⟦internet}\n",
        )],
        message: "link `internet` is not cut here",
    },
    Case {
        what: "failover timed from an event that takes nothing away",
        edits: &[
            (
                "{at: 9s, gatewayRestart",
                "{at: 9s, name: back, gatewayRestart",
            ),
            ("after: kill,", "after: ⟦back,"),
        ],
        message: "event `back` (gatewayRestart) takes nothing away",
    },
    Case {
        what: "failover of a flow without a rate",
        edits: &[
            (", rate: 100}", "}"),
            ("failover: {flow: f,", "failover: {flow: ⟦f,"),
        ],
        message: "flow `f` has no rate",
    },
];

/// Apply the edits, strip the marker, and return the text and the marker's line and column.
fn broken_copy(base: &str, edits: &[(&str, &str)], what: &str) -> (String, (usize, usize)) {
    let mut text = base.to_owned();
    for (find, replace) in edits {
        assert!(
            text.contains(find),
            "{what}: `{find}` is not in the base text"
        );
        text = text.replacen(find, replace, 1);
    }
    let offset = text
        .find(MARK)
        .unwrap_or_else(|| panic!("{what}: no {MARK} marker in the edits"));
    text.remove(offset);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (text, (line, column))
}

fn diagnostics(name: &str, text: &str) -> Vec<Diagnostic> {
    match Scenario::parse(name, text) {
        Ok(_) => Vec::new(),
        Err(err) => err.diagnostics().to_vec(),
    }
}

#[test]
fn the_base_scenario_is_valid() {
    if let Err(err) = Scenario::parse("base.yaml", BASE) {
        panic!("base scenario must parse:\n{err}");
    }
}

#[test]
fn every_broken_copy_fails_at_the_marked_place() {
    let mut failures = Vec::new();
    for case in CASES {
        let (text, (line, column)) = broken_copy(BASE, case.edits, case.what);
        let found = diagnostics("broken.yaml", &text);
        let hit = found.iter().any(|d| {
            d.location.map(|l| (l.line, l.column)) == Some((line, column))
                && d.message.contains(case.message)
        });
        if !hit {
            let got: Vec<String> = found.iter().map(Diagnostic::to_string).collect();
            failures.push(format!(
                "{}: expected broken.yaml:{line}:{column}: …{}…\n   got: {}",
                case.what,
                case.message,
                if got.is_empty() {
                    "no error".to_owned()
                } else {
                    got.join("\n        ")
                }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn every_problem_in_a_file_is_reported_in_file_order() {
    let (text, _) = broken_copy(
        BASE,
        &[
            (
                "site: site-a, internalIP: 10.1.0.11",
                "site: site-q, internalIP: 10.1.0.11",
            ),
            ("{at: 9s,", "{at: ⟦1s,"),
        ],
        "two problems",
    );
    let found = diagnostics("broken.yaml", &text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].message.contains("unknown site `site-q`"));
    assert!(found[1].message.contains("out of order"));
    assert!(found[0].location < found[1].location);
}

#[test]
fn a_syntax_error_has_a_location() {
    let text = BASE.replace(
        "sites: [site-a], gatewayPools",
        "sites: [site-a, gatewayPools",
    );
    let found = diagnostics("broken.yaml", &text);
    assert_eq!(found.len(), 1, "{found:?}");
    let at = found[0].location.expect("syntax errors carry a location");
    assert!(
        at.line >= 26,
        "error reported before the broken line: {}",
        found[0]
    );
    assert!(
        found[0]
            .to_string()
            .starts_with(&format!("broken.yaml:{}:{}: ", at.line, at.column))
    );
}

#[test]
fn a_broken_expressroute_fails_with_line_and_column() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/expressroute.yaml");
    let original = std::fs::read_to_string(path).expect("expressroute.yaml is readable");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(
                "{name: azure-w1, site: site-azure,",
                "{name: azure-w1, site: ⟦site-azur,",
            )],
            "unknown site `site-azur`",
        ),
        (
            &[("meshNodes: false ", "meshNode: ⟦false ")],
            "unknown field `meshNode`",
        ),
        (
            &[("to: all, within: 60s", "to: all, within: ⟦60")],
            "duration `60` has no unit",
        ),
    ];
    for (edits, message) in cases {
        let (text, (line, column)) = broken_copy(&original, edits, message);
        let err = Scenario::parse("expressroute.yaml", &text).expect_err(message);
        let first = err.to_string();
        let first = first.lines().next().unwrap_or_default();
        let prefix = format!("expressroute.yaml:{line}:{column}: ");
        assert!(
            first.starts_with(&prefix) && first.contains(message),
            "expected {prefix}…{message}…, got {first}"
        );
    }
}

#[test]
fn an_empty_file_says_what_is_missing() {
    let found = diagnostics("empty.yaml", "");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].to_string().starts_with("empty.yaml:"),
        "{}",
        found[0]
    );
    let found = diagnostics("no-topology.yaml", "kernel: host\n");
    assert!(
        found[0].message.contains("missing field `topology`"),
        "{}",
        found[0]
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let err = Scenario::load("/nonexistent/scenario.yaml").expect_err("no such file");
    assert!(
        err.to_string().contains("/nonexistent/scenario.yaml"),
        "{err}"
    );
}

/// Dropping any single line of a shipped scenario never panics: it parses, or every problem
/// it reports carries a location.
#[test]
fn dropping_any_line_never_panics_and_errors_are_located() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway-failover.yaml");
    let original = std::fs::read_to_string(path).expect("gateway-failover.yaml is readable");
    let lines: Vec<&str> = original.lines().collect();
    let mut rejected = 0;
    for skip in 0..lines.len() {
        let text: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        if let Err(err) = Scenario::parse("cut.yaml", &text) {
            rejected += 1;
            for d in err.diagnostics() {
                assert!(
                    d.location.is_some(),
                    "line {} dropped: unlocated {d}",
                    skip + 1
                );
            }
        }
    }
    // Comments and optional fields may go; most lines may not.
    assert!(
        rejected > lines.len() / 3,
        "only {rejected} of {} cuts rejected",
        lines.len()
    );
}
