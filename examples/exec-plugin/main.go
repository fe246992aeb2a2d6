// scan-gate: a Countersign `exec` verifier plugin, in Go with the standard library only.
//
// It passes an image when one of its referrers of the configured artifact type (Countersign fetches
// them; see `referrers.artifactTypes` in the verifier's options) holds a JSON scan report whose numeric
// field `config.field` is at most `config.max`, and (optionally) when the image manifest carries every
// annotation in `config.requireAnnotations`.
//
// Protocol (docs/plugins-exec.md): one VerifyRequest on stdin, one VerifyResponse on stdout, exit status 0.
// Anything else (a non-zero exit, a malformed response) makes Countersign treat the image as undecided.
// The plugin needs no network and no credentials: every byte it reads came from Countersign, which
// checked it against its digest; the plugin checks the digests again anyway, as a verifier should.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	apiVersion = "countersign.dev/exec/v1"
	maxRequest = 128 << 20 // bytes read from stdin
)

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType"`
	Annotations  map[string]string `json:"annotations"`
}

// []byte fields are base64 in JSON: encoding/json decodes them.
type referrer struct {
	Descriptor descriptor        `json:"descriptor"`
	Manifest   []byte            `json:"manifest"`
	Blobs      map[string][]byte `json:"blobs"`
}

type config struct {
	Field              string   `json:"field"`
	Max                *float64 `json:"max"`
	RequireAnnotations []string `json:"requireAnnotations"`
}

type request struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Verifier   struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"verifier"`
	Config  config `json:"config"`
	Subject struct {
		Reference string  `json:"reference"`
		Digest    string  `json:"digest"`
		MediaType string  `json:"mediaType"`
		Size      int64   `json:"size"`
		Manifest  []byte  `json:"manifest"`
		Namespace *string `json:"namespace"`
	} `json:"subject"`
	Referrers        []referrer `json:"referrers"`
	SkippedReferrers []struct {
		Digest *string `json:"digest"`
		Reason string  `json:"reason"`
	} `json:"skippedReferrers"`
	TimeoutSeconds float64 `json:"timeoutSeconds"`
}

type response struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Subject    struct {
		Digest string `json:"digest"`
	} `json:"subject"`
	Passed    *bool          `json:"passed,omitempty"`
	Undecided bool           `json:"undecided,omitempty"`
	Reason    string         `json:"reason"`
	Message   string         `json:"message"`
	Details   map[string]any `json:"details,omitempty"`
}

// manifest is the part of an OCI image manifest the plugin reads.
type manifest struct {
	Subject *struct {
		Digest string `json:"digest"`
	} `json:"subject"`
	Layers      []descriptor      `json:"layers"`
	Annotations map[string]string `json:"annotations"`
}

func main() {
	data, err := io.ReadAll(io.LimitReader(os.Stdin, maxRequest+1))
	if err != nil || len(data) > maxRequest {
		fail("cannot read the request: %v", err)
	}
	var req request
	// Countersign may add request fields within v1: unknown fields are ignored, not refused.
	if err := json.Unmarshal(data, &req); err != nil {
		fail("the request is not valid JSON: %v", err)
	}
	if req.APIVersion != apiVersion || req.Kind != "VerifyRequest" {
		fail("unsupported request %q %q (this plugin speaks %s)", req.APIVersion, req.Kind, apiVersion)
	}
	out := decide(&req)
	out.APIVersion, out.Kind = apiVersion, "VerifyResponse"
	out.Subject.Digest = req.Subject.Digest // the answer names the image it is about
	encoded, err := json.Marshal(out)
	if err != nil {
		fail("cannot encode the response: %v", err)
	}
	if _, err := os.Stdout.Write(encoded); err != nil {
		fail("cannot write the response: %v", err)
	}
}

// fail is for a broken exchange: Countersign reports a non-zero exit as plugin_failed (undecided).
func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scan-gate: "+format+"\n", args...)
	os.Exit(2)
}

func passed(reason, message string, details map[string]any) response {
	yes := true
	return response{Passed: &yes, Reason: reason, Message: message, Details: details}
}

func failed(reason, message string, details map[string]any) response {
	no := false
	return response{Passed: &no, Reason: reason, Message: message, Details: details}
}

func undecided(reason, message string) response {
	return response{Undecided: true, Reason: reason, Message: message}
}

func decide(req *request) response {
	cfg := req.Config
	if cfg.Field == "" {
		return undecided("config_invalid", "scan-gate needs config.field: the scan report field to check")
	}
	limit := 0.0
	if cfg.Max != nil {
		limit = *cfg.Max
	}
	if err := checkDigest(req.Subject.Manifest, req.Subject.Digest); err != nil {
		return undecided("subject_mismatch", "the subject manifest: "+err.Error())
	}
	if len(cfg.RequireAnnotations) > 0 {
		var image manifest
		if err := json.Unmarshal(req.Subject.Manifest, &image); err != nil {
			return failed("manifest_invalid", "the image manifest is not JSON: "+err.Error(), nil)
		}
		for _, key := range cfg.RequireAnnotations {
			if _, ok := image.Annotations[key]; !ok {
				return failed("annotation_missing",
					fmt.Sprintf("%s has no annotation %s", req.Subject.Reference, key),
					map[string]any{"annotation": key})
			}
		}
	}
	var problems []string
	for _, ref := range req.Referrers {
		value, err := scanValue(ref, req.Subject.Digest, cfg.Field)
		if err != nil {
			problems = append(problems, ref.Descriptor.Digest+": "+err.Error())
			continue
		}
		details := map[string]any{"referrer": ref.Descriptor.Digest, "field": cfg.Field, "value": value, "max": limit}
		if value <= limit {
			return passed("scan_passed",
				fmt.Sprintf("scan report %s: %s is %g (at most %g)", ref.Descriptor.Digest, cfg.Field, value, limit),
				details)
		}
		problems = append(problems, fmt.Sprintf("%s: %s is %g, more than %g", ref.Descriptor.Digest, cfg.Field, value, limit))
	}
	if len(problems) == 0 {
		return failed("scan_missing",
			fmt.Sprintf("%s has no scan report attached (%d referrers skipped by Countersign)",
				req.Subject.Reference, len(req.SkippedReferrers)),
			map[string]any{"skippedByCountersign": len(req.SkippedReferrers)})
	}
	return failed("scan_failed", "no scan report passes: "+strings.Join(problems, "; "),
		map[string]any{"reports": len(problems)})
}

// scanValue checks a referrer (digests, subject) and reads the number `field` from its first JSON layer.
func scanValue(ref referrer, subject, field string) (float64, error) {
	if err := checkDigest(ref.Manifest, ref.Descriptor.Digest); err != nil {
		return 0, err
	}
	var m manifest
	if err := json.Unmarshal(ref.Manifest, &m); err != nil {
		return 0, fmt.Errorf("manifest is not JSON: %w", err)
	}
	if m.Subject == nil || m.Subject.Digest != subject {
		return 0, errors.New("its subject is not this image")
	}
	for _, layer := range m.Layers {
		blob, ok := ref.Blobs[layer.Digest]
		if !ok {
			return 0, fmt.Errorf("layer %s was not handed over", layer.Digest)
		}
		if err := checkDigest(blob, layer.Digest); err != nil {
			return 0, err
		}
		var report map[string]any
		decoder := json.NewDecoder(bytes.NewReader(blob))
		decoder.UseNumber()
		if err := decoder.Decode(&report); err != nil {
			continue // not a JSON object: look at the next layer
		}
		raw, ok := report[field].(json.Number)
		if !ok {
			return 0, fmt.Errorf("the report has no numeric field %q", field)
		}
		return raw.Float64()
	}
	return 0, errors.New("no layer holds a JSON scan report")
}

func checkDigest(data []byte, digest string) error {
	algorithm, want, ok := strings.Cut(digest, ":")
	if !ok || algorithm != "sha256" {
		return fmt.Errorf("unsupported digest %q", digest)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != want {
		return fmt.Errorf("content does not match %s", digest)
	}
	return nil
}
