//! CEL rules shared by several CRDs, built once so every resource words them the same way.
//!
//! Each rule judges one object only; cross-object checks (overlapping Sites, unknown names)
//! belong to the controller. Rules that iterate lists rely on the list's `maxItems` and the
//! items' `maxLength` so the API server's cost estimate stays low.

use kube::core::{Message, Rule};

/// Go `time.ParseDuration` syntax without a sign: `100ms`, `1s`, `1m30s`, `1.5s`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// Shortest probe interval accepted (BFD-like probing faster than this floods the CPU).
pub const MIN_INTERVAL: &str = "10ms";
/// Longest probe interval accepted (slower detection than this is not health checking).
pub const MAX_INTERVAL: &str = "1m";
/// Lowercase RFC 1123 subdomain: the names of Sites and GatewayPools referenced by bindings.
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Default per-node IPv4 block prefix length when `nodeBlockSizes.ipv4` is unset.
pub const DEFAULT_IPV4_BLOCK: u8 = 24;
/// Default per-node IPv6 block prefix length when `nodeBlockSizes.ipv6` is unset.
pub const DEFAULT_IPV6_BLOCK: u8 = 64;

/// Every entry of a list of strings is a CIDR (IPv4 or IPv6).
pub fn cidr_list(field: &str) -> Rule {
    rule(
        "self.all(c, isCIDR(c))",
        format!("{field} entries must be CIDRs such as 10.1.0.0/16 or fd00:1::/64"),
    )
}

/// Every CIDR entry has no host bits set (the address is the network address).
pub fn canonical_cidr_list(field: &str) -> Rule {
    rule(
        "self.all(c, !isCIDR(c) || cidr(c) == cidr(c).masked())",
        format!("{field} entries must not have host bits set: write 10.1.0.0/16, not 10.1.0.5/16"),
    )
}

/// Every entry of a list of strings is an IP address.
pub fn ip_list(field: &str) -> Rule {
    rule(
        "self.all(a, isIP(a))",
        format!("{field} entries must be IP addresses such as 10.1.0.5 or fd00:1::5"),
    )
}

/// A probe interval is written as a Go duration.
pub fn interval_format(field: &str) -> Rule {
    rule(
        format!("self.matches('{}')", cel_escape(DURATION_PATTERN)),
        format!("{field} must be a duration such as 100ms, 1s or 1m30s"),
    )
}

/// A probe interval lies between [`MIN_INTERVAL`] and [`MAX_INTERVAL`].
pub fn interval_bounds(field: &str) -> Rule {
    rule(
        format!(
            "!self.matches('{}') || (duration(self) >= duration('{MIN_INTERVAL}') && duration(self) <= duration('{MAX_INTERVAL}'))",
            cel_escape(DURATION_PATTERN)
        ),
        format!("{field} must be between {MIN_INTERVAL} and {MAX_INTERVAL}"),
    )
}

/// A label selector that selects at least one label.
pub fn non_empty_selector(field: &str) -> Rule {
    rule(
        "self.size() > 0",
        format!(
            "{field} must name at least one label, e.g. unbounded-cloud.io/unbounded-net-gateway: \"true\""
        ),
    )
}

/// The per-node block of `family` (4 or 6) is no larger than any pool of that family.
pub fn block_fits_pools(family: u8) -> Rule {
    let (key, default) = block_key(family);
    rule(
        format!(
            "self.cidrBlocks.all(c, !isCIDR(c) || cidr(c).ip().family() != {family} || \
         cidr(c).prefixLength() <= (has(self.nodeBlockSizes) && has(self.nodeBlockSizes.{key}) ? self.nodeBlockSizes.{key} : {default}))"
        ),
        format!(
            "nodeBlockSizes.{key} (default /{default}) must be greater than or equal to the prefix length of every IPv{family} cidrBlock: a node's block is cut from the pool"
        ),
    )
}

/// A block size is only given for a family the pool has.
pub fn block_family_present(family: u8) -> Rule {
    let (key, _) = block_key(family);
    rule(
        format!(
            "!has(self.nodeBlockSizes) || !has(self.nodeBlockSizes.{key}) || \
         self.cidrBlocks.exists(c, isCIDR(c) && cidr(c).ip().family() == {family})"
        ),
        format!(
            "nodeBlockSizes.{key} is set but no cidrBlock is IPv{family}: add an IPv{family} cidrBlock or remove nodeBlockSizes.{key}"
        ),
    )
}

fn block_key(family: u8) -> (&'static str, u8) {
    if family == 4 {
        ("ipv4", DEFAULT_IPV4_BLOCK)
    } else {
        ("ipv6", DEFAULT_IPV6_BLOCK)
    }
}

/// Escapes a regular expression for a single-quoted CEL string literal.
fn cel_escape(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('\'', "\\'")
}

fn rule(expression: impl Into<String>, message: String) -> Rule {
    Rule::new(expression).message(Message::Message(message))
}

/// No two pod CIDR blocks of one Site overlap (counting each block against all blocks,
/// itself included, so a block repeated in two assignments is caught too).
pub fn pools_disjoint() -> Rule {
    rule(
        "!has(self.podCidrAssignments) || self.podCidrAssignments.all(a, a.cidrBlocks.all(c, !isCIDR(c) || \
         self.podCidrAssignments.map(b, b.cidrBlocks.filter(d, isCIDR(d) && \
         (cidr(c).containsCIDR(d) || cidr(d).containsCIDR(c))).size()).sum() == 1))",
        "podCidrAssignments cidrBlocks must not overlap one another: each pod address may belong to one pool only"
            .to_owned(),
    )
}

/// Pod CIDR blocks do not overlap the Site's node CIDRs.
pub fn pools_apart_from_nodes() -> Rule {
    rule(
        "!has(self.podCidrAssignments) || self.podCidrAssignments.all(a, a.cidrBlocks.all(c, !isCIDR(c) || \
         self.nodeCidrs.all(n, !isCIDR(n) || !(cidr(c).containsCIDR(n) || cidr(n).containsCIDR(c)))))",
        "podCidrAssignments cidrBlocks must not overlap nodeCidrs: pod and node addresses would collide"
            .to_owned(),
    )
}

/// Every key of a label map is a valid label key: an optional DNS-subdomain prefix and `/`,
/// then a name of at most 63 characters (alphanumerics, `-`, `_`, `.`; alphanumeric ends).
pub fn label_keys(field: &str) -> Rule {
    rule(
        "self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
        format!(
            "{field} keys must be label keys such as unbounded-cloud.io/unbounded-net-gateway: \
             an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.'"
        ),
    )
}
