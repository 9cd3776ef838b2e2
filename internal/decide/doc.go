// Package decide is the second stage of a call: from the facts the read
// stage gathered, one pure decision per model (Facts.Decide) over named
// states, the directory verdicts between ModelDownloads that share a PVC
// (PeerDirectories), the queue's admission (DownloadQueue, Share), and the
// status those decisions render (StatusValue, Summary).
//
// It imports internal/read and the packages beneath it, never the stages
// above it: what a decision asks for is built by internal/build and
// composed by main.
package decide
