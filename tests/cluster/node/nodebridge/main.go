// Command nodebridge joins the harness's control plane, which listens on 127.0.0.1 in the host's
// network namespace, to the real node, which lives in a network namespace of its own with no
// link to the host's. It runs in the host's namespace and holds sockets in both:
//
//   - API server: for each --api ADDR it listens on ADDR inside the node's namespace (the kubelet,
//     kube-proxy and, through the `kubernetes` Service, pods connect there) and forwards each
//     connection to --apiserver, 127.0.0.1:PORT in the host's namespace.
//   - Egress: it serves HTTP CONNECT on the Unix socket --egress. The API server's egress selector
//     sends its "cluster" traffic there (Service-backed webhooks, kubelet logs/exec, pods/proxy),
//     and nodebridge dials the requested address inside the node's namespace.
//
// So the host's namespace only ever sees loopback and Unix-socket traffic; every address of the
// node, its pods and its Services exists only inside the node's namespace.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var apiAddrs listFlag
	netnsPath := flag.String("netns", "", "the node's network namespace (a bind-mounted nsfs file)")
	apiserver := flag.String("apiserver", "", "the API server in the host's namespace, e.g. 127.0.0.1:16443")
	egress := flag.String("egress", "", "Unix socket for the API server's HTTP CONNECT egress")
	flag.Var(&apiAddrs, "api", "address inside the node's namespace to forward to --apiserver (repeatable)")
	flag.Parse()
	if *netnsPath == "" || *apiserver == "" || *egress == "" || len(apiAddrs) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	ns, err := os.Open(*netnsPath)
	if err != nil {
		log.Fatalf("open netns: %v", err)
	}
	defer ns.Close()
	b := &bridge{ns: ns}

	for _, addr := range apiAddrs {
		var l net.Listener
		if err := b.inNode(func() error {
			var err error
			l, err = net.Listen("tcp", addr)
			return err
		}); err != nil {
			log.Fatalf("listen %s in the node's namespace: %v", addr, err)
		}
		log.Printf("forwarding %s (node namespace) to %s (host loopback)", addr, *apiserver)
		go serve(l, func(c net.Conn) {
			up, err := net.DialTimeout("tcp", *apiserver, 10*time.Second)
			if err != nil {
				log.Printf("dial API server: %v", err)
				c.Close()
				return
			}
			pipe(c, up)
		})
	}

	_ = os.Remove(*egress)
	el, err := net.Listen("unix", *egress)
	if err != nil {
		log.Fatalf("listen %s: %v", *egress, err)
	}
	log.Printf("HTTP CONNECT egress into the node's namespace on %s", *egress)
	go serve(el, b.connect)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	el.Close()
	_ = os.Remove(*egress)
}

type bridge struct {
	ns *os.File
}

// inNode runs f on an OS thread that has joined the node's network namespace. The thread is
// never returned to the Go scheduler (it stays locked and ends with the goroutine), so no other
// goroutine ever runs in the wrong namespace. Sockets created by f keep the node's namespace.
func (b *bridge) inNode(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no Unlock: the thread exits with this goroutine
		if err := unix.Setns(int(b.ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		done <- f()
	}()
	return <-done
}

func serve(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		go handle(c)
	}
}

// connect answers one HTTP CONNECT request (what the API server's egress dialer sends) by dialing
// the target inside the node's namespace.
func (b *bridge) connect(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if req.Method != http.MethodConnect {
		fmt.Fprintf(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		c.Close()
		return
	}
	var up net.Conn
	err = b.inNode(func() error {
		var err error
		up, err = net.DialTimeout("tcp", req.Host, 10*time.Second)
		return err
	})
	if err != nil {
		log.Printf("CONNECT %s: %v", req.Host, err)
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		c.Close()
		return
	}
	fmt.Fprintf(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	if br.Buffered() > 0 { // the client spoke before our answer: pass on what it sent
		buffered, _ := br.Peek(br.Buffered())
		if _, err := up.Write(buffered); err != nil {
			c.Close()
			up.Close()
			return
		}
	}
	pipe(c, up)
}

// pipe copies both ways until both directions are done, passing half-closes on.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go half(a, b)
	go half(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
