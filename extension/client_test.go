package extension

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeExtensionsAPI is the part of the Extensions API the client speaks,
// checking the headers Lambda requires.
func fakeExtensionsAPI(t *testing.T, events []Event, errs *[]string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Lambda-Extension-Name"); got != "sluice" {
			http.Error(w, "bad name "+got, http.StatusForbidden)
			return
		}
		var body struct{ Events []string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Events) == 0 {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		w.Header().Set("Lambda-Extension-Identifier", "ext-1")
		resp := map[string]string{"functionName": "fn", "functionVersion": "$LATEST", "handler": "h"}
		if r.Header.Get("Lambda-Extension-Accept-Feature") == "accountId" {
			resp["accountId"] = "123456789012"
		}
		json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("GET /2020-01-01/extension/event/next", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Lambda-Extension-Identifier") != "ext-1" {
			http.Error(w, "unknown extension", http.StatusForbidden)
			return
		}
		if len(events) == 0 {
			http.Error(w, "no more events", http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(events[0])
		events = events[1:]
	})
	mux.HandleFunc("POST /2020-01-01/extension/{kind}/error", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*errs = append(*errs, r.PathValue("kind")+" "+r.Header.Get("Lambda-Extension-Function-Error-Type")+" "+string(b))
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestClient(t *testing.T) {
	var reported []string
	events := []Event{
		{EventType: "INVOKE", RequestID: "r1", DeadlineMs: 1700000000000, InvokedFunctionArn: "arn"},
		{EventType: "SHUTDOWN", ShutdownReason: "spindown", DeadlineMs: 1700000002000},
	}
	srv := fakeExtensionsAPI(t, append([]Event(nil), events...), &reported)
	api := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	c := NewClient(srv.Client(), api)
	reg, err := c.Register(ctx, "sluice", []EventType{Invoke, Shutdown})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if want := (Registration{FunctionName: "fn", FunctionVersion: "$LATEST", Handler: "h", AccountID: "123456789012"}); reg != want {
		t.Errorf("Register = %+v, want %+v", reg, want)
	}
	if c.ID() != "ext-1" {
		t.Errorf("ID = %q, want ext-1", c.ID())
	}
	for _, want := range events {
		got, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Next (-want +got):\n%s", diff)
		}
	}
	if _, err := c.Next(ctx); err == nil || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("Next after the last event: err = %v, want status 500", err)
	}
	if err := c.InitError(ctx, "Extension.ConfigInvalid", `SLUICE_SINK="x": bad`); err != nil {
		t.Fatalf("InitError: %v", err)
	}
	want := `init Extension.ConfigInvalid {"errorMessage":"SLUICE_SINK=\"x\": bad","errorType":"Extension.ConfigInvalid"}`
	if len(reported) != 1 || reported[0] != want {
		t.Errorf("reported %q, want [%q]", reported, want)
	}
}

func TestRegisterRefused(t *testing.T) {
	var reported []string
	srv := fakeExtensionsAPI(t, nil, &reported)
	_, err := NewClient(srv.Client(), strings.TrimPrefix(srv.URL, "http://")).Register(context.Background(), "other", []EventType{Invoke})
	if err == nil || !strings.Contains(err.Error(), "status 403") {
		t.Errorf("Register with a wrong name: err = %v, want status 403", err)
	}
}
