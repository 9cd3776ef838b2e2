package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"

	"github.com/hfops/function-hf-download/internal/decide"
	"github.com/hfops/function-hf-download/internal/read"
)

// The catalogue of bad inputs: for each, exactly what the user reads on the
// XR (the results Crossplane turns into events and the Synced condition, and
// the function's conditions), so a reworded or lost field path or value shows
// up here. Every case also passes checkInvariants: no panic, valid Jobs,
// every model in one status list, no Secret data in the response or logs.

// userView is what a user sees of a response, one line each: results as
// "Severity: message", then conditions as "Type=Status Reason: message".
func userView(rsp *fnv1.RunFunctionResponse) []string {
	var out []string
	for _, r := range rsp.GetResults() {
		sev := strings.TrimPrefix(r.GetSeverity().String(), "SEVERITY_")
		out = append(out, strings.ToUpper(sev[:1])+strings.ToLower(sev[1:])+": "+r.GetMessage())
	}
	for _, c := range rsp.GetConditions() {
		// The storage and directory conditions of a healthy PVC say nothing
		// about the bad input each case is about; cases about them keep them.
		if c.GetReason() == read.ReasonPVCFound || c.GetReason() == decide.ReasonNoConflict {
			continue
		}
		s := strings.TrimPrefix(c.GetStatus().String(), "STATUS_CONDITION_")
		out = append(out, fmt.Sprintf("%s=%s%s %s: %s", c.GetType(), s[:1], strings.ToLower(s[1:]), c.GetReason(), c.GetMessage()))
	}
	return out
}

const inputHeader = "apiVersion: hfdownload.fn.hfops.kamal.dev/v1beta1\nkind: Input\n"

// xrHead is an XR without its spec.
var xrHead = strings.TrimSuffix(xrYAML("x"), "spec:\n  x\n")

func TestCatalogue(t *testing.T) {
	long := strings.Repeat("a", 300)
	rtl := "org/\u202egnp.exe"
	manyGlobs := "include: [" + strings.TrimSuffix(strings.Repeat("'*.json', ", 65), ", ") + "]\n"
	base := run(t, withToken(xrYAML(twoModels)).build())
	var ka string
	for k := range jobResources(base) {
		if strings.Contains(k, "alpha") {
			ka = k
		}
	}
	observedAlpha := func(status string) map[string]*fnv1.Resource {
		return map[string]*fnv1.Resource{ka: observedJob(jobResources(base)[ka], status)}
	}

	cases := []struct {
		name string
		req  testRequest
		want []string
	}{
		// The whole spec is unusable: one Fatal result naming field and value.
		{"SpecNotAnObject", testRequest{xr: xrHead + "spec: models\n"}, []string{
			"Fatal: invalid ModelDownload spec: spec: Invalid value: \"string\": must be an object",
		}},
		{"SpecMissing", testRequest{xr: xrHead}, []string{
			"Fatal: invalid ModelDownload spec: [spec: Required value, spec.models: Required value: at least one model is required, spec.storagePVC: Required value: the name of a PersistentVolumeClaim in the XR's namespace]",
		}},
		{"ModelsNotAList", testRequest{xr: xrYAML("storagePVC: models\nmodels: {name: org/a}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.models: Invalid value: \"object\": must be an array",
		}},
		{"ModelsEmpty", testRequest{xr: xrYAML("storagePVC: models\nmodels: []\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.models: Required value: at least one model is required",
		}},
		{"ModelNotAnObject", testRequest{xr: xrYAML("storagePVC: models\nmodels: [org/a]\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.models[0]: Invalid value: \"string\": must be an object",
		}},
		{"ModelNameMissing", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- revision: v1\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.models[0].name: Required value: the Hugging Face repo id, such as org/name",
		}},
		{"ModelNameEmpty", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: ''\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.models[0].name: Required value: the Hugging Face repo id, such as org/name",
		}},
		{"ModelNameWrongType", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: 7\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.models[0].name: Invalid value: \"number\": must be a string",
		}},
		{"DuplicateModels", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\n- name: org/b\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.models[2].name: Duplicate value: \"org/a\": already used by spec.models[0].name",
		}},
		{"StoragePVCMissing", testRequest{xr: xrYAML("models:\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.storagePVC: Required value: the name of a PersistentVolumeClaim in the XR's namespace",
		}},
		{"StoragePVCPathTraversal", testRequest{xr: xrYAML("storagePVC: ../etc\nmodels:\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.storagePVC: Invalid value: \"../etc\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
		}},
		{"StoragePVCTooLong", testRequest{xr: xrYAML("storagePVC: " + long + "\nmodels:\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.storagePVC: Invalid value: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\": must be no more than 253 characters",
		}},
		{"TokenRefNameMissing", testRequest{xr: xrYAML("storagePVC: models\nhfTokenRef: {key: token}\nmodels:\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.hfTokenRef.name: Required value: the name of a Secret in the XR's namespace",
		}},
		{"TokenKeyPathTraversal", testRequest{xr: xrYAML("storagePVC: models\nhfTokenRef: {name: hf, key: ../token}\nmodels:\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: [spec.hfTokenRef.key: Invalid value: \"../token\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+'), spec.hfTokenRef.key: Invalid value: \"../token\": must not start with '..']",
		}},
		{"NodePoolShellMetacharacters", testRequest{xr: xrYAML("storagePVC: models\nnodePool: 'gpu;rm -rf /'\nmodels:\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.nodePool: Invalid value: \"gpu;rm -rf /\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
		}},
		{"KeepAliveNegative", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {keepAliveSeconds: -1}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.keepAliveSeconds: Invalid value: -1: must be between 0 and 2147483647",
		}},
		{"TimeoutHuge", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {timeoutMillis: 1e300}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.timeoutMillis: Invalid value: 1e+300: must be between 0 and 2592000000",
		}},
		{"TimeoutFraction", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {timeoutMillis: 1.5}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.timeoutMillis: Invalid value: 1.5: must be a whole number",
		}},
		{"TimeoutWrongType", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {timeoutMillis: '60000'}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.timeoutMillis: Invalid value: \"string\": must be an integer",
		}},
		{"ForceReloadWrongType", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {forceReload: 'yes'}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.forceReload: Invalid value: \"string\": must be a boolean",
		}},
		// Strict: a field the API does not have (a typo, a wrong case) is
		// named, never ignored; Crossplane's own fields are not the API's.
		{"SpecFieldUnknown", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsetings: {cpu: '2'}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.setings: Forbidden: unknown field (field names are case-sensitive)",
		}},
		{"SettingsFieldWrongCase", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {CPU: '2'}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.CPU: Forbidden: unknown field (field names are case-sensitive)",
		}},
		{"CrossplaneFieldsAreNotTheAPIs", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\n" +
			"crossplane: {compositionRef: {name: c}}\nclaimRef: {name: md}\nresourceRefs: []\nwriteConnectionSecretToRef: {name: s}\n")}, []string{
			"ModelsDownloaded=False Downloading: 0/1 models downloaded; in progress: org/a",
			"ModelsValid=True AllModelsValid: ",
		}},
		{"CPUNotAQuantity", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {cpu: two}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.cpu: Invalid value: \"two\": must be a Kubernetes quantity such as 500m, 2 or 8Gi",
		}},
		{"MemoryNegative", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {memory: -4Gi}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.memory: Invalid value: \"-4Gi\": must be greater than zero",
		}},
		{"CPUZero", testRequest{xr: xrYAML("storagePVC: models\nmodels:\n- name: org/a\nsettings: {cpu: '0'}\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.settings.cpu: Invalid value: \"0\": must be greater than zero",
		}},

		{"StorageSizeNotAQuantity", testRequest{xr: xrYAML("storagePVC: models\nstorage: {size: lots}\nmodels:\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: spec.storage.size: Invalid value: \"lots\": must be a Kubernetes quantity such as 500m, 2 or 8Gi",
		}},
		{"StorageUnsupportedValues", testRequest{xr: xrYAML("storagePVC: models\nstorage: {size: 1Gi, deletionPolicy: Sometimes, accessModes: [ReadWriteAlways]}\nmodels:\n- name: org/a\n")}, []string{
			"Fatal: invalid ModelDownload spec: [spec.storage.accessModes[0]: Unsupported value: \"ReadWriteAlways\": supported values: \"ReadWriteOnce\", \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOncePod\", spec.storage.deletionPolicy: Unsupported value: \"Sometimes\": supported values: \"Orphan\", \"Delete\"]",
		}},

		// One model is unusable: a Warning and ModelsValid=False naming
		// field and value; the model is Failed and the others go ahead.
		{"NameShellMetacharacters", withModel("- name: 'org/x;rm -rf ~'\n"), []string{
			"Warning: spec.models[2].name: Invalid value: \"org/x;rm -rf ~\": must be a Hugging Face repo id (name or org/name): only letters, digits, '.', '_' and '-' are allowed",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/x;rm -rf ~",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].name: Invalid value: \"org/x;rm -rf ~\": must be a Hugging Face repo id (name or org/name): only letters, digits, '.', '_' and '-' are allowed",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"NamePathTraversal", withModel("- name: ../../etc\n"), []string{
			"Warning: spec.models[2].name: Invalid value: \"../../etc\": must be a Hugging Face repo id (name or org/name): at most one '/' is allowed",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: ../../etc",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].name: Invalid value: \"../../etc\": must be a Hugging Face repo id (name or org/name): at most one '/' is allowed",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"NameAbsolutePath", withModel("- name: /etc/passwd\n"), []string{
			"Warning: spec.models[2].name: Invalid value: \"/etc/passwd\": must be a Hugging Face repo id (name or org/name): at most one '/' is allowed",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: /etc/passwd",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].name: Invalid value: \"/etc/passwd\": must be a Hugging Face repo id (name or org/name): at most one '/' is allowed",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"NameThreeParts", withModel("- name: org/name/extra\n"), []string{
			"Warning: spec.models[2].name: Invalid value: \"org/name/extra\": must be a Hugging Face repo id (name or org/name): at most one '/' is allowed",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/name/extra",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].name: Invalid value: \"org/name/extra\": must be a Hugging Face repo id (name or org/name): at most one '/' is allowed",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"NameTooLong", withModel("- name: org/" + strings.Repeat("n", 97) + "\n"), []string{
			"Warning: spec.models[2].name: Invalid value: \"org/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\": must be a Hugging Face repo id (name or org/name): each part must be at most 96 characters",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].name: Invalid value: \"org/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\": must be a Hugging Face repo id (name or org/name): each part must be at most 96 characters",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"NameRightToLeftOverride", withModel("- name: \"" + rtl + "\"\n"), []string{
			"Warning: spec.models[2].name: Invalid value: \"org/\\u202egnp.exe\": must be a Hugging Face repo id (name or org/name): only letters, digits, '.', '_' and '-' are allowed",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/\u202egnp.exe",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].name: Invalid value: \"org/\\u202egnp.exe\": must be a Hugging Face repo id (name or org/name): only letters, digits, '.', '_' and '-' are allowed",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"NameHomoglyph", withModel("- name: \"\u043erg/model\"\n"), []string{
			"Warning: spec.models[2].name: Invalid value: \"оrg/model\": must be a Hugging Face repo id (name or org/name): only letters, digits, '.', '_' and '-' are allowed",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: оrg/model",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].name: Invalid value: \"оrg/model\": must be a Hugging Face repo id (name or org/name): only letters, digits, '.', '_' and '-' are allowed",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"NameLeadingDash", withModel("- name: -rf\n"), []string{
			"Warning: spec.models[2].name: Invalid value: \"-rf\": must be a Hugging Face repo id (name or org/name): a part must not start or end with '-' or '.'",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: -rf",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].name: Invalid value: \"-rf\": must be a Hugging Face repo id (name or org/name): a part must not start or end with '-' or '.'",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"RevisionFlag", withModel("- name: org/bad\n  revision: --help\n"), []string{
			"Warning: spec.models[2].revision: Invalid value: \"--help\": must be a branch, tag or commit: must not start with '-' or '/' nor end with '/' or '.'",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].revision: Invalid value: \"--help\": must be a branch, tag or commit: must not start with '-' or '/' nor end with '/' or '.'",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"RevisionPathTraversal", withModel("- name: org/bad\n  revision: ../../x\n"), []string{
			"Warning: spec.models[2].revision: Invalid value: \"../../x\": must be a branch, tag or commit: '..' and '//' are not allowed",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].revision: Invalid value: \"../../x\": must be a branch, tag or commit: '..' and '//' are not allowed",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"RevisionNewline", withModel("- name: org/bad\n  revision: \"main\\nrm -rf /\"\n"), []string{
			"Warning: spec.models[2].revision: Invalid value: \"main\\nrm -rf /\": must be a branch, tag or commit: only letters, digits, '.', '_', '-', '+' and '/' are allowed",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].revision: Invalid value: \"main\\nrm -rf /\": must be a branch, tag or commit: only letters, digits, '.', '_', '-', '+' and '/' are allowed",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"RevisionTooLong", withModel("- name: org/bad\n  revision: " + long + "\n"), []string{
			"Warning: spec.models[2].revision: Invalid value: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\": must be a branch, tag or commit: must be at most 255 characters",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].revision: Invalid value: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\": must be a branch, tag or commit: must be at most 255 characters",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"SHAWithSpaces", withModel("- name: org/bad\n  sha: 'abc $(id)'\n"), []string{
			"Warning: spec.models[2].sha: Invalid value: \"abc $(id)\": must be at most 128 letters, digits, ':', '.', '_' or '-'",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].sha: Invalid value: \"abc $(id)\": must be at most 128 letters, digits, ':', '.', '_' or '-'",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"RetryCountNegative", withModel("- name: org/bad\n  retryCount: -1\n"), []string{
			"Warning: spec.models[2].retryCount: Invalid value: -1: must be between 0 and 100",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].retryCount: Invalid value: -1: must be between 0 and 100",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"RetryCountHuge", withModel("- name: org/bad\n  retryCount: 1e18\n"), []string{
			"Warning: spec.models[2].retryCount: Invalid value: 1e+18: must be between 0 and 100",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].retryCount: Invalid value: 1e+18: must be between 0 and 100",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"RetryCountWrongType", withModel("- name: org/bad\n  retryCount: three\n"), []string{
			"Warning: spec.models[2].retryCount: Invalid value: \"string\": must be an integer",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].retryCount: Invalid value: \"string\": must be an integer",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"GlobAbsolute", withModel("- name: org/bad\n  include: [/etc/*]\n"), []string{
			"Warning: spec.models[2].include[0]: Invalid value: \"/etc/*\": must be relative to the repo root, without '..'",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].include[0]: Invalid value: \"/etc/*\": must be relative to the repo root, without '..'",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"GlobPathTraversal", withModel("- name: org/bad\n  exclude: ['../*.bin']\n"), []string{
			"Warning: spec.models[2].exclude[0]: Invalid value: \"../*.bin\": must be relative to the repo root, without '..'",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].exclude[0]: Invalid value: \"../*.bin\": must be relative to the repo root, without '..'",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"GlobFlag", withModel("- name: org/bad\n  include: ['--local-dir=/']\n"), []string{
			"Warning: spec.models[2].include[0]: Invalid value: \"--local-dir=/\": must not start with '-'",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].include[0]: Invalid value: \"--local-dir=/\": must not start with '-'",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"GlobUnclosedBracket", withModel("- name: org/bad\n  include: ['*.[json']\n"), []string{
			"Warning: spec.models[2].include[0]: Invalid value: \"*.[json\": is not a valid glob: syntax error in pattern",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].include[0]: Invalid value: \"*.[json\": is not a valid glob: syntax error in pattern",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"GlobControlCharacter", withModel("- name: org/bad\n  include: [\"a\\nb\"]\n"), []string{
			"Warning: spec.models[2].include[0]: Invalid value: \"a\\nb\": must not contain control characters",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].include[0]: Invalid value: \"a\\nb\": must not contain control characters",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"GlobEmpty", withModel("- name: org/bad\n  include: ['']\n"), []string{
			"Warning: spec.models[2].include[0]: Invalid value: \"\": must not be empty",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].include[0]: Invalid value: \"\": must not be empty",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"GlobsTooMany", withModel("- name: org/bad\n  " + manyGlobs), []string{
			"Warning: spec.models[2].include: Too many: 65: must have at most 64 items",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].include: Too many: 65: must have at most 64 items",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"GlobsNotAList", withModel("- name: org/bad\n  include: '*.json'\n"), []string{
			"Warning: spec.models[2].include: Invalid value: \"string\": must be an array",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].include: Invalid value: \"string\": must be an array",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"ModelFieldUnknown", withModel("- name: org/bad\n  revison: v1\n"), []string{
			"Warning: spec.models[2].revison: Forbidden: unknown field (field names are case-sensitive)",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].revison: Forbidden: unknown field (field names are case-sensitive)",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"RepoTypeUnsupported", withModel("- name: org/bad\n  repoType: space\n"), []string{
			"Warning: spec.models[2].repoType: Unsupported value: \"space\": supported values: \"model\", \"dataset\"",
			"ModelsDownloaded=False DownloadFailed: 0/3 models downloaded; failed: org/bad",
			"ModelsValid=False InvalidModels: skipped invalid models: spec.models[2].repoType: Unsupported value: \"space\": supported values: \"model\", \"dataset\"",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},

		// The token: no new Job, a Warning and HFTokenAvailable=False naming
		// Secret, key and namespace, never a byte of the value.
		{"SecretMissing", testRequest{xr: xrYAML(twoModels)}, []string{
			"Warning: no new download Jobs start until the token is readable: Secret \"hf\" in namespace \"ml\" was not found",
			"ModelsDownloaded=False Downloading: 0/2 models downloaded; in progress: org/alpha, org/beta",
			"ModelsValid=True AllModelsValid: ",
			"HFTokenAvailable=False SecretNotFound: Secret \"hf\" in namespace \"ml\" was not found",
		}},
		{"SecretKeyMissing", testRequest{xr: xrYAML(twoModels), secret: secretResource("other", testToken)}, []string{
			"Warning: no new download Jobs start until the token is readable: Secret \"hf\" in namespace \"ml\" has no key \"token\"",
			"ModelsDownloaded=False Downloading: 0/2 models downloaded; in progress: org/alpha, org/beta",
			"ModelsValid=True AllModelsValid: ",
			"HFTokenAvailable=False KeyNotFound: Secret \"hf\" in namespace \"ml\" has no key \"token\"",
		}},
		{"TokenEmpty", testRequest{xr: xrYAML(twoModels), secret: secretResource("token", "")}, []string{
			"Warning: no new download Jobs start until the token is readable: Secret \"hf\" in namespace \"ml\" key \"token\" is empty",
			"ModelsDownloaded=False Downloading: 0/2 models downloaded; in progress: org/alpha, org/beta",
			"ModelsValid=True AllModelsValid: ",
			"HFTokenAvailable=False TokenEmpty: Secret \"hf\" in namespace \"ml\" key \"token\" is empty",
		}},
		{"TokenNotBase64", testRequest{xr: xrYAML(twoModels), secret: &fnv1.Resource{Resource: mustStruct(
			"apiVersion: v1\nkind: Secret\nmetadata: {name: hf, namespace: ml}\ndata: {token: 'hf_not_base64_SECRETVALUE%%%'}\n")}}, []string{
			"Warning: no new download Jobs start until the token is readable: Secret \"hf\" in namespace \"ml\" key \"token\" is not valid base64",
			"ModelsDownloaded=False Downloading: 0/2 models downloaded; in progress: org/alpha, org/beta",
			"ModelsValid=True AllModelsValid: ",
			"HFTokenAvailable=False TokenNotBase64: Secret \"hf\" in namespace \"ml\" key \"token\" is not valid base64",
		}},

		// Observed state that is not what the function made.
		{"ObservedNotOurs", testRequest{xr: xrYAML(twoModels), observed: map[string]*fnv1.Resource{"other-step": {Resource: mustStruct(
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  annotations: {hfops.kamal.dev/model: org/alpha}\ndata: {a: b}\n")}}}, []string{
			"Warning: no new download Jobs start until the token is readable: Secret \"hf\" in namespace \"ml\" was not found",
			"ModelsDownloaded=False Downloading: 0/2 models downloaded; in progress: org/alpha, org/beta",
			"ModelsValid=True AllModelsValid: ",
			"HFTokenAvailable=False SecretNotFound: Secret \"hf\" in namespace \"ml\" was not found",
		}},
		{"ObservedJobStatusNonsense", testRequest{xr: xrYAML(twoModels), secret: secretResource("token", testToken),
			observed: observedAlpha("conditions: [7, {type: Failed, status: 'True', reason: [x]}, {type: Complete, status: true}]\nactive: '1'\n")}, []string{
			"ModelsDownloaded=False Downloading: 0/2 models downloaded; in progress: org/alpha, org/beta",
			"ModelsValid=True AllModelsValid: ",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},
		{"StatusEditedIntoNonsense", withToken(xrYAML(twoModels) + "status:\n  pending: 7\n  models:\n  - name: org/alpha\n    phase: Exploded\n    hash: ../../x\n    commit: 'rm -rf'\n  - 7\n  - {name: org/beta, phase: Completed, hash: 0000000000, files: -1}\n"), []string{
			"ModelsDownloaded=False Downloading: 0/2 models downloaded; in progress: org/alpha, org/beta",
			"ModelsValid=True AllModelsValid: ",
			"HFTokenAvailable=True SecretFound: Secret \"hf\" key \"token\" holds a token",
		}},

		// The Input, written by the platform team.
		{"InputUnknownField", testRequest{xr: xrYAML(twoModels), input: inputHeader + "imagee: x\n", secret: secretResource("token", testToken)}, []string{
			"Fatal: invalid function input: input: Invalid value: \"imagee\": unknown field",
		}},
		{"InputFieldWrongCase", testRequest{xr: xrYAML(twoModels), input: inputHeader + "mountPAth: /elsewhere\n", secret: secretResource("token", testToken)}, []string{
			"Fatal: invalid function input: input: Invalid value: \"mountPAth\": unknown field (field names are case-sensitive)",
		}},
		{"InputWrongType", testRequest{xr: xrYAML(twoModels), input: inputHeader + "maxWorkers: '8'\n", secret: secretResource("token", testToken)}, []string{
			"Fatal: invalid function input: input.maxWorkers: Invalid value: \"string\": must be a whole number that fits in int32",
		}},
		{"InputNestedWrongType", testRequest{xr: xrYAML(twoModels), input: inputHeader + "securityContext: {runAsUser: [1000]}\n", secret: secretResource("token", testToken)}, []string{
			"Fatal: invalid function input: input.securityContext.runAsUser: Invalid value: \"array\": must be a whole number that fits in int64",
		}},
		{"InputReservedEnv", testRequest{xr: xrYAML(twoModels), input: inputHeader + "env:\n- name: HF_TOKEN\n  value: x\n", secret: secretResource("token", testToken)}, []string{
			"Fatal: invalid function input: input.env[0].name: Forbidden: HF_TOKEN is set by the function itself",
		}},
		{"InputMountPathTraversal", testRequest{xr: xrYAML(twoModels), input: inputHeader + "mountPath: /models/../etc\n", secret: secretResource("token", testToken)}, []string{
			"Fatal: invalid function input: input.mountPath: Invalid value: \"/models/../etc\": must be a clean absolute path other than /",
		}},
		{"InputRootUser", testRequest{xr: xrYAML(twoModels), input: inputHeader + "securityContext: {runAsUser: 0}\n", secret: secretResource("token", testToken)}, []string{
			"Fatal: invalid function input: input.securityContext.runAsUser: Invalid value: 0: must be a non-root id between 1 and 2147483647",
		}},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("two cases named %s", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			rsp := checkInvariants(t, tc.req.build())
			got := userView(rsp)
			if tc.want == nil {
				t.Errorf("got:\n%#v", got)
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("what the user sees; -want, +got:\n%s", diff)
			}
		})
	}
	if len(cases) < 30 {
		t.Errorf("the catalogue has %d cases; it should keep at least 30", len(cases))
	}
}

// withModel is twoModels with the token and one more model entry.
func withModel(entry string) testRequest {
	return withToken(xrYAML(twoModels + entry))
}

// TestObservedNotOursUntouched: while the token is missing the function keeps
// its own Jobs as observed; a resource another step composed is never among
// them, whatever annotations it carries (it was re-applied stripped of its
// data before).
func TestObservedNotOursUntouched(t *testing.T) {
	for _, kind := range []string{"ConfigMap", "Job"} {
		t.Run(kind, func(t *testing.T) {
			other := mustStruct("apiVersion: v1\nkind: " + kind + "\nmetadata:\n  name: cfg\n  namespace: ml\n" +
				"  annotations: {hfops.kamal.dev/model: org/alpha, hfops.kamal.dev/config-hash: x}\ndata: {a: b}\n")
			rsp := checkInvariants(t, testRequest{xr: xrYAML(twoModels), observed: map[string]*fnv1.Resource{"other-step": {Resource: other}}}.build())
			if r, ok := jobResources(rsp)["other-step"]; ok {
				t.Errorf("a resource of another step was re-applied: %v", r.GetResource())
			}
		})
	}
}
