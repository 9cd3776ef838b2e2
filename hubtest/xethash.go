package hubtest

import (
	"encoding/binary"
	"fmt"
	"strings"

	"lukechampine.com/blake3"
)

// Xet's hashes, as hf_xet 1.8.0 computes them (xet_core_structures'
// merklehash module): keyed BLAKE3 throughout. hf_xet checks none of them on
// download, but huggingface_hub 2.x shares cached blobs across repos by the
// file hash, so two contents must never share one: the Hub computes them for
// real.

// The keys of Xet's keyed BLAKE3 hashes (merklehash/data_hash.rs).
var (
	xetDataKey         = []byte{102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41}
	xetInternalNodeKey = []byte{1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63}
	// xetFileSalt is the salt of a file hash: none, 32 zero bytes.
	xetFileSalt = make([]byte, 32)
)

// merkleHash is a Xet hash: 32 bytes as BLAKE3 gives them.
type merkleHash [32]byte

// String is the hash as Xet writes it (MerkleHash::hex): the 32 bytes as four
// little-endian 64-bit words, each in 16 hex digits; not the bytes in order.
func (m merkleHash) String() string {
	var b strings.Builder
	for i := 0; i < len(m); i += 8 {
		fmt.Fprintf(&b, "%016x", binary.LittleEndian.Uint64(m[i:]))
	}
	return b.String()
}

func keyedHash(key, data []byte) merkleHash {
	h := blake3.New(32, key)
	_, _ = h.Write(data) // a hash.Hash never fails
	var m merkleHash
	h.Sum(m[:0])
	return m
}

// chunkHash is the hash of a chunk with content data.
func chunkHash(data []byte) merkleHash { return keyedHash(xetDataKey, data) }

// merkleNode is a node of Xet's merkle tree: a hash and the bytes under it.
type merkleNode struct {
	hash merkleHash
	size int
}

// aggregatedHash is the root of Xet's merkle tree over nodes
// (merklehash/aggregated_hashes.rs): each level groups its nodes, left to
// right, into runs cut where a hash is 0 mod 4 (2 to 9 nodes a run), and
// hashes each run; the last node left is the root. No nodes: zero.
func aggregatedHash(nodes []merkleNode) merkleHash {
	if len(nodes) == 0 {
		return merkleHash{}
	}
	for len(nodes) > 1 {
		var next []merkleNode
		for len(nodes) > 0 {
			cut := nextMergeCut(nodes)
			next = append(next, mergeNodes(nodes[:cut]))
			nodes = nodes[cut:]
		}
		nodes = next
	}
	return nodes[0].hash
}

// nextMergeCut is how many of nodes the next run takes: all when 2 or fewer;
// else up to and including the first node from the third on whose hash's
// last word is 0 mod 4; else 9, or all when fewer.
func nextMergeCut(nodes []merkleNode) int {
	if len(nodes) <= 2 {
		return len(nodes)
	}
	end := min(9, len(nodes))
	for i := 2; i < end; i++ {
		if binary.LittleEndian.Uint64(nodes[i].hash[24:])%4 == 0 {
			return i + 1
		}
	}
	return end
}

// mergeNodes is the node over run: the internal-node hash of one
// "<hex> : <size>\n" line per node.
func mergeNodes(run []merkleNode) merkleNode {
	var b strings.Builder
	size := 0
	for _, n := range run {
		fmt.Fprintf(&b, "%s : %d\n", n.hash, n.size)
		size += n.size
	}
	return merkleNode{keyedHash(xetInternalNodeKey, []byte(b.String())), size}
}

// xorbHash is the hash of a xorb holding chunks, in order.
func xorbHash(chunks []merkleNode) merkleHash { return aggregatedHash(chunks) }

// fileHash is the hash of a file made of chunks, in order: the merkle root
// hashed again with the file salt; an empty file's is zero.
func fileHash(chunks []merkleNode) merkleHash {
	if len(chunks) == 0 {
		return merkleHash{}
	}
	root := aggregatedHash(chunks)
	return keyedHash(xetFileSalt, root[:])
}
