package hubtest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parseMerkleHash is the hash that Xet writes as s (merkleHash.String).
func parseMerkleHash(t *testing.T, s string) merkleHash {
	t.Helper()
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != 32 {
		t.Fatalf("%q is no Xet hash: %v", s, err)
	}
	var m merkleHash
	for i := 0; i < 32; i += 8 {
		binary.LittleEndian.PutUint64(m[i:], binary.BigEndian.Uint64(raw[i:]))
	}
	return m
}

// TestXetHashes: the Hub's Xet hashes are hf_xet's, by the vectors of
// /work/notes/xet-protocol.md §5.4: hf_xet's own (aggregated_hashes.rs
// test_correctness, zero salt) and those its reference port, checked against
// them (xet_hash_reference.py), gives for chunks and a deeper tree. The hex
// is MerkleHash's, word by word little-endian.
func TestXetHashes(t *testing.T) {
	const (
		c = "cfc5d07f6f03c29bbf424132963fe08d19a37d5757aaf520bf08119f05cd56d6"
		d = "c3e67584b5c4fc2a89837ec39e40f2c8a6bb0b2987ac94cd4b31e5fbdd210a72"
		e = "0d2beb91b9196929a5ddec9f6e306924ddf4a24268e3e59fd8464738d525af37"
		f = "adf8773496a9b7319b2e50dc98093f344053b17d8ad37100b9c07d9805988784"
		z = "0000000000000000000000000000000000000000000000000000000000000000"
	)
	type node struct {
		hash string
		size int
	}
	// twenty chunks, the ith i+1 bytes of i: a tree of three levels whose
	// runs are cut at a hash 0 mod 4 and at 9 nodes.
	var twenty []node
	for i := range 20 {
		twenty = append(twenty, node{chunkHash(bytes.Repeat([]byte{byte(i)}, i+1)).String(), i + 1})
	}
	for _, tc := range []struct {
		name           string
		nodes          []node
		wantXorb, file string
	}{
		{"none", nil, z, z},
		{"one", []node{{c, 100}}, c, "8e16257caa3fe079d484d872a8975264b2ff683b0d6db9028cc7c0f968a45661"},
		{"one empty", []node{{z, 0}}, z, "638a6bc391964a85939d48f008e8bdbae6a7975e7ca2d87a3ce2492f4e4d8a4c"},
		{"three", []node{{c, 100}, {d, 200}, {e, 300}}, "71ec1275fca074724e2dd666921b3277c7cee603e4d025bcab2d4050015be2bc", "54e55dccc6653c612bdb5576c5d3cb34bb31bc4e100248abccf4c908b3ef7715"},
		{"four alike", []node{{c, 100}, {c, 100}, {c, 100}, {c, 100}}, "89f2ada89ff8c96763c6b25010e6dd76a4c05b1466207633ea559acf2093211b", "2cdba690d0e09563596e0cda626d43eb4c96ef1e994fe72d9b2f5a83cfcd36dd"},
		{"six", []node{{c, 100}, {d, 200}, {c, 100}, {d, 200}, {e, 300}, {f, 400}}, "52c826f99507aa05d0b45e9837fa1709e0485425cfbcb1e80db3905cf98b3ee9", "91d21684db364c8883ab8209fa5eb2e781cf07f37e1fa43e731c30839afe422f"},
		{"empty between", []node{{z, 0}, {c, 100}, {z, 0}, {c, 100}, {z, 0}}, "f36c6a6374a567efd36ed087aeb680b57e3af4e0b5b8e7be2593df4cb647a2de", "ab2f46d31855e1133b3b5b70e78f841394a648710a208923b221c1a8a0572a1f"},
		{"twenty chunks (reference port)", twenty, "c0b555d649f5dac7c5aabc5677ee8286204e5e703b8432459b1e419e64468d92", "131452d880c9f41ec2a75c825922ce6b932ecdfe310a5be6baeee211946a3bf4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nodes []merkleNode
			for _, n := range tc.nodes {
				nodes = append(nodes, merkleNode{parseMerkleHash(t, n.hash), n.size})
			}
			got := []string{xorbHash(nodes).String(), fileHash(nodes).String()}
			if diff := cmp.Diff([]string{tc.wantXorb, tc.file}, got); diff != "" {
				t.Errorf("xorb and file hash (-want +got):\n%s", diff)
			}
		})
	}
	for _, tc := range []struct{ data, want string }{
		{"", "e0f2cf784e7e5f10c34f84af150e9a5ff9664216debad915364d741049870f67"},
		{"hello world", "4e39378b9d359f118190557a1f44130219a54e5fcfa07bd96cf50b466fe651b1"},
	} {
		if got := chunkHash([]byte(tc.data)).String(); got != tc.want {
			t.Errorf("chunk hash of %q: %s, want %s", tc.data, got, tc.want)
		}
	}
}
