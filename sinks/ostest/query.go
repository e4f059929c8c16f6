package ostest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Do sends a request straight to the node (no proxy, no signature) and
// decodes its JSON answer into out, unless out is nil. An answer other than
// 2xx is an error that quotes it.
func (n *Node) Do(ctx context.Context, method, path, body string, out any) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.URL+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, tail(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// scrollPage is the number of documents Sources reads per request.
const scrollPage = 5000

// Sources refreshes index (a name, or a pattern such as lambda-logs-*) and
// returns the _source of every document in it, with only the fields given
// (all when none are). An index that does not exist has no documents.
func (n *Node) Sources(ctx context.Context, index string, fields ...string) ([]json.RawMessage, error) {
	if err := n.Do(ctx, http.MethodPost, "/"+index+"/_refresh?allow_no_indices=true&ignore_unavailable=true", "", nil); err != nil {
		return nil, err
	}
	q := map[string]any{"size": scrollPage, "sort": []string{"_doc"}}
	if len(fields) > 0 {
		q["_source"] = fields
	}
	body, _ := json.Marshal(q) // a map of strings and ints always encodes
	type page struct {
		ScrollID string `json:"_scroll_id"`
		Hits     struct {
			Hits []struct {
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	var p page
	if err := n.Do(ctx, http.MethodPost, "/"+index+"/_search?scroll=1m&allow_no_indices=true&ignore_unavailable=true", string(body), &p); err != nil {
		return nil, err
	}
	var out []json.RawMessage
	for {
		for _, h := range p.Hits.Hits {
			out = append(out, h.Source)
		}
		if len(p.Hits.Hits) < scrollPage || p.ScrollID == "" {
			break
		}
		next, _ := json.Marshal(map[string]string{"scroll": "1m", "scroll_id": p.ScrollID})
		p = page{}
		if err := n.Do(ctx, http.MethodPost, "/_search/scroll", string(next), &p); err != nil {
			return nil, err
		}
	}
	if p.ScrollID != "" {
		clear, _ := json.Marshal(map[string]string{"scroll_id": p.ScrollID})
		_ = n.Do(ctx, http.MethodDelete, "/_search/scroll", string(clear), nil) // it expires anyway
	}
	return out, nil
}

// Count refreshes index and returns how many of its documents match the
// query_string query q (all documents when q is empty), with _count.
func (n *Node) Count(ctx context.Context, index, q string) (int, error) {
	if err := n.Do(ctx, http.MethodPost, "/"+index+"/_refresh?allow_no_indices=true&ignore_unavailable=true", "", nil); err != nil {
		return 0, err
	}
	body := ""
	if q != "" {
		b, _ := json.Marshal(map[string]any{"query": map[string]any{"query_string": map[string]string{"query": q}}})
		body = string(b)
	}
	var ans struct {
		Count int `json:"count"`
	}
	if err := n.Do(ctx, http.MethodPost, "/"+index+"/_count?allow_no_indices=true&ignore_unavailable=true", body, &ans); err != nil {
		return 0, err
	}
	return ans.Count, nil
}

// InstallTemplate installs an index template (the JSON of
// layer/opensearch/index-template.json, say) under name.
func (n *Node) InstallTemplate(ctx context.Context, name string, template []byte) error {
	if !json.Valid(template) {
		return fmt.Errorf("index template %s: not JSON", name)
	}
	return n.Do(ctx, http.MethodPut, "/_index_template/"+name, string(bytes.TrimSpace(template)), nil)
}
