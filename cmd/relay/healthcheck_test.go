package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "jetstream unavailable", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"http 200", []string{"--url", ok.URL + "/healthz"}, 0},
		{"http 503", []string{"--url", down.URL + "/healthz"}, 1},
		{"tcp open", []string{"--tcp", l.Addr().String()}, 0},
		{"tcp closed", []string{"--tcp", closedAddr}, 1},
		{"neither", nil, 2},
		{"both", []string{"--url", ok.URL, "--tcp", l.Addr().String()}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if got := run(context.Background(), append([]string{"healthcheck"}, tt.args...), &out, &errOut); got != tt.want {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", got, tt.want, out.String(), errOut.String())
			}
		})
	}
}
