package egress

import (
	"net/netip"
	"strconv"
	"strings"
)

// neverAddr is an address that is never a gate's, webhook's or Prometheus
// client's business, whatever the cluster's networks: only an allowlist
// entry naming exactly this address opens it.
type neverAddr struct {
	addr netip.Addr
	what string
}

// neverAddrs is the one list of cloud metadata addresses the operator
// refuses. Each entry cites where the address is documented.
var neverAddrs = []neverAddr{
	// AWS EC2 instance metadata (IMDS), IPv4 and IPv6:
	// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html
	// ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/").
	// The same IPv4 address serves Google Cloud
	// (https://cloud.google.com/compute/docs/metadata/querying-metadata,
	// metadata.google.internal resolves to it), Azure's Instance Metadata
	// Service (https://learn.microsoft.com/azure/virtual-machines/instance-metadata-service)
	// and Oracle Cloud's IMDS
	// (https://docs.oracle.com/en-us/iaas/Content/Compute/Tasks/gettingmetadata.htm,
	// "an HTTP endpoint listening on 169.254.169.254").
	{netip.MustParseAddr("169.254.169.254"), "cloud instance metadata (AWS, Google Cloud, Azure, Oracle Cloud)"},
	{netip.MustParseAddr("fd00:ec2::254"), "AWS EC2 instance metadata over IPv6"},
	// EKS Pod Identity Agent, IPv4 and IPv6:
	// https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html
	// ("169.254.170.23 for IPv4 and the localhost IP address [fd00:ec2::23] for IPv6").
	{netip.MustParseAddr("169.254.170.23"), "the EKS Pod Identity agent"},
	{netip.MustParseAddr("fd00:ec2::23"), "the EKS Pod Identity agent over IPv6"},
	// Amazon ECS task metadata endpoint (v2; v3 and v4 serve on the same
	// address): https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v2.html
	// ("169.254.170.2/v2/metadata").
	{netip.MustParseAddr("169.254.170.2"), "the Amazon ECS task metadata endpoint"},
	// Google Cloud's metadata server over IPv6 on IPv6-only instances. We
	// found no Google page stating it in our reference search; it is listed
	// by the SSRF deny-lists of several projects, and blocking it costs
	// nothing, since nothing else lives there.
	{netip.MustParseAddr("fd20:ce::254"), "the Google Cloud metadata server over IPv6"},
	// Azure WireServer, a public address every Azure VM reaches:
	// https://learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16
	{netip.MustParseAddr("168.63.129.16"), "the Azure WireServer"},
	// Alibaba Cloud ECS instance metadata:
	// https://www.alibabacloud.com/help/en/ecs/user-guide/overview-of-ecs-instance-metadata
	// (cloud-init's AliYun datasource: "the well known url http://100.100.100.200/").
	{netip.MustParseAddr("100.100.100.200"), "Alibaba Cloud instance metadata"},
	// Oracle Cloud Infrastructure Compute Classic instance metadata:
	// https://docs.oracle.com/en/cloud/iaas/compute-iaas-cloud/stcsg/retrieving-instance-metadata.html
	// ("stored at http://192.0.0.192/{version}/metadata").
	{netip.MustParseAddr("192.0.0.192"), "Oracle Cloud (Compute Classic) instance metadata"},
}

// neverWhat says what a never-address is, or "".
func neverWhat(addr netip.Addr) string {
	for _, n := range neverAddrs {
		if n.addr == addr {
			return n.what
		}
	}
	return ""
}

var (
	// nat64WKP is the NAT64 well-known prefix (RFC 6052): the IPv4 address
	// is the last 32 bits.
	nat64WKP = netip.MustParsePrefix("64:ff9b::/96")
	// nat64Local is the local-use NAT64 prefix (RFC 8215); the /96 form
	// puts the IPv4 address in the last 32 bits too.
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	// sixToFour is 6to4 (RFC 3056): the IPv4 address is bits 16 to 48.
	sixToFour = netip.MustParsePrefix("2002::/16")
	// compat is the deprecated IPv4-compatible form ::a.b.c.d (RFC 4291).
	compat = netip.MustParsePrefix("::/96")
)

// embeddedIPv4 returns the IPv4 address an IPv6 address carries, in the
// mapped, NAT64, 6to4 and IPv4-compatible forms, so that no spelling of a
// refused IPv4 address gets through.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	a = a.WithZone("")
	if a.Is4() {
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	switch {
	case nat64WKP.Contains(a), nat64Local.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case compat.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	}
	return netip.Addr{}, false
}

// legacyNumericHost says whether host is a spelling of an IPv4 address that
// inet_aton accepts and netip does not: a decimal, octal or hexadecimal
// number (2852039166, 0xa9fea9fe), dotted parts in octal or hex
// (0251.0376.0251.0376), or fewer than four parts (169.254.43518). Some
// resolvers turn these into addresses, others send them to DNS; the
// operator refuses them either way.
func legacyNumericHost(host string) bool {
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		base, digits := 10, p
		switch {
		case strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X"):
			base, digits = 16, p[2:]
			if digits == "" {
				// inet_aton accepts a bare "0x" as zero.
				continue
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		if _, err := strconv.ParseUint(digits, base, 32); err != nil {
			return false
		}
	}
	return true
}
