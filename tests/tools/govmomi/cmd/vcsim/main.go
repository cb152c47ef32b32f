// Command vcsim serves a simulated vCenter (or ESX host) built with the govmomi
// simulator library.
//
// Since govmomi v0.47 the upstream vcsim and govc commands live in nested Go modules
// (github.com/vmware/govmomi/vcsim, .../govc) that are not tagged and therefore cannot
// be fetched from the Go module proxy; only the root module github.com/vmware/govmomi is.
// This launcher is the project's own entry point on top of that library. Its flag names
// and defaults follow the upstream vcsim command so that the upstream documentation
// (vcsim/README.md) applies:
//
//	vcsim -l 127.0.0.1:0 -dc 1 -cluster 1 -host 1 -vm 0
//
// On start-up it prints one line, `export GOVC_URL=<url> GOVC_SIM_PID=<pid>`, to stdout (or
// to the file given with -E) and then serves until SIGINT/SIGTERM, when it removes the
// model's temporary datastore directories.
package main

import (
	"crypto/tls"
	"expvar"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/uuid"

	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/types"

	// Optional endpoints (vAPI REST incl. tagging, PBM, lookup, STS, ...). Each package
	// registers itself with simulator.RegisterEndpoint in an init function.
	_ "github.com/vmware/govmomi/cns/simulator"
	_ "github.com/vmware/govmomi/eam/simulator"
	_ "github.com/vmware/govmomi/lookup/simulator"
	_ "github.com/vmware/govmomi/pbm/simulator"
	_ "github.com/vmware/govmomi/ssoadmin/simulator"
	_ "github.com/vmware/govmomi/sts/simulator"
	_ "github.com/vmware/govmomi/vapi/appliance/simulator"
	_ "github.com/vmware/govmomi/vapi/cis/tasks/simulator"
	_ "github.com/vmware/govmomi/vapi/cluster/simulator"
	_ "github.com/vmware/govmomi/vapi/crypto/simulator"
	_ "github.com/vmware/govmomi/vapi/esx/settings/simulator"
	_ "github.com/vmware/govmomi/vapi/namespace/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
	_ "github.com/vmware/govmomi/vapi/vcenter/consumptiondomains/simulator"
	_ "github.com/vmware/govmomi/vapi/vm/simulator"
	_ "github.com/vmware/govmomi/vsan/simulator"
	_ "github.com/vmware/govmomi/vslm/simulator"
)

const govmomiModule = "github.com/vmware/govmomi"

// options holds everything that is not a field of simulator.Model.
type options struct {
	esx         bool
	tls         bool
	tlsCert     string
	tlsKey      string
	envOut      string
	listen      string
	username    string
	password    string
	tunnel      int
	traceFile   string
	stdinExit   bool
	loadDir     string
	methodDelay string
	instanceID  string
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("vcsim: ")

	model := simulator.VPX()
	var opt options
	registerFlags(flag.CommandLine, model, &opt)
	flag.Parse()

	switch flag.Arg(0) {
	case "":
	case "version":
		printVersion(os.Stdout)
		return
	case "uuidgen":
		fmt.Println(uuid.NewString())
		return
	default:
		log.Fatalf("unknown command %q (known: version, uuidgen)", flag.Arg(0))
	}

	if err := run(model, &opt); err != nil {
		log.Fatal(err)
	}
}

func registerFlags(fs *flag.FlagSet, m *simulator.Model, o *options) {
	// Inventory size.
	fs.IntVar(&m.Datacenter, "dc", m.Datacenter, "Number of datacenters")
	fs.IntVar(&m.Cluster, "cluster", m.Cluster, "Number of clusters")
	fs.IntVar(&m.ClusterHost, "host", m.ClusterHost, "Number of hosts per cluster")
	fs.IntVar(&m.Host, "standalone-host", m.Host, "Number of standalone hosts")
	fs.IntVar(&m.Datastore, "ds", m.Datastore, "Number of local datastores")
	fs.IntVar(&m.Machine, "vm", m.Machine, "Number of virtual machines per resource pool")
	fs.IntVar(&m.Pool, "pool", m.Pool, "Number of resource pools per compute resource")
	fs.IntVar(&m.App, "app", m.App, "Number of virtual apps per compute resource")
	fs.IntVar(&m.Pod, "pod", m.Pod, "Number of storage pods per datacenter")
	fs.IntVar(&m.Portgroup, "pg", m.Portgroup, "Number of port groups")
	fs.IntVar(&m.PortgroupNSX, "pg-nsx", m.PortgroupNSX, "Number of NSX backed port groups")
	fs.IntVar(&m.OpaqueNetwork, "nsx", m.OpaqueNetwork, "Number of NSX backed opaque networks")
	fs.IntVar(&m.Folder, "folder", m.Folder, "Number of folders")
	fs.BoolVar(&m.Autostart, "autostart", m.Autostart, "Power on the virtual machines created by the model")
	fs.StringVar(&m.ServiceContent.About.ApiVersion, "api-version", m.ServiceContent.About.ApiVersion, "API version reported by the service")
	fs.BoolVar(&o.esx, "esx", false, "Simulate a standalone ESX host instead of vCenter")
	fs.StringVar(&o.loadDir, "load", "", "Load the inventory from a directory written by 'govc object.save'")
	fs.StringVar(&o.instanceID, "instance-uuid", "", "about.instanceUuid to report (default: a new random UUID, so two simulators differ as two vCenters do)")

	// Serving.
	fs.StringVar(&o.listen, "l", "127.0.0.1:8989", "Listen address (port 0 picks a free port)")
	fs.StringVar(&o.envOut, "E", "-", "Where to write the GOVC_URL line: '-' for stdout, else an existing file or fifo")
	fs.BoolVar(&o.tls, "tls", true, "Serve HTTPS")
	fs.StringVar(&o.tlsCert, "tlscert", "", "TLS certificate file (default: built-in test certificate)")
	fs.StringVar(&o.tlsKey, "tlskey", "", "TLS key file")
	fs.StringVar(&o.username, "username", "", "Accepted login user name; empty accepts any (value may name a file holding it)")
	fs.StringVar(&o.password, "password", "", "Accepted login password; empty accepts any (value may name a file holding it)")
	fs.IntVar(&o.tunnel, "tunnel", -1, "SDK tunnel port (negative: no tunnel)")
	fs.BoolVar(&o.stdinExit, "stdinexit", false, "Exit when a byte is read from stdin")

	// Diagnostics and fault injection.
	fs.BoolVar(&simulator.Trace, "trace", simulator.Trace, "Write SOAP requests and responses to -trace-file")
	fs.StringVar(&o.traceFile, "trace-file", "", "SOAP trace output file (default stderr)")
	fs.IntVar(&m.DelayConfig.Delay, "delay", m.DelayConfig.Delay, "Delay in milliseconds for every method")
	fs.StringVar(&o.methodDelay, "method-delay", "", "Per-method delays in milliseconds: 'Method1:ms,Method2:ms'")
	fs.Float64Var(&m.DelayConfig.DelayJitter, "delay-jitter", m.DelayConfig.DelayJitter, "Delay jitter as coefficient of variation (e.g. 0.5)")
}

func run(model *simulator.Model, opt *options) error {
	if opt.traceFile != "" {
		f, err := os.Create(opt.traceFile)
		if err != nil {
			return err
		}
		defer f.Close()
		simulator.TraceFile = f
		simulator.Trace = true
	}

	if opt.methodDelay != "" {
		delays, err := parseMethodDelay(opt.methodDelay)
		if err != nil {
			return err
		}
		model.DelayConfig.MethodDelay = delays
		// Also delays completion of tasks whose info.name matches.
		simulator.TaskDelay.MethodDelay = delays
	}

	listen := &url.URL{Host: opt.listen}
	if opt.username != "" {
		user, err := session.Secret(opt.username)
		if err != nil {
			return err
		}
		pass, err := session.Secret(opt.password)
		if err != nil {
			return err
		}
		listen.User = url.UserPassword(user, pass)
	}

	if err := pointHostTemplateAt(opt.listen); err != nil {
		return err
	}

	if opt.esx {
		vpx := model
		model = simulator.ESX()
		model.Datastore = vpx.Datastore
		model.Machine = vpx.Machine
		model.Autostart = vpx.Autostart
		model.DelayConfig = vpx.DelayConfig
	}

	// The simulator's model reports one fixed instanceUuid; real vCenters each
	// have their own, and cross-vCenter calls (ServiceLocator) depend on it.
	if opt.instanceID == "" {
		opt.instanceID = uuid.NewString()
	}
	model.ServiceContent.About.InstanceUuid = opt.instanceID

	const marker = " (govmomi simulator)"
	model.ServiceContent.About.FullName += marker
	model.ServiceContent.About.OsType = runtime.GOOS + "-" + runtime.GOARCH
	esx.HostSystem.Summary.Hardware.Vendor += marker

	var err error
	if opt.loadDir != "" {
		err = model.Load(opt.loadDir)
	} else {
		err = model.Create()
	}
	if err != nil {
		return err
	}
	defer model.Remove()

	model.Service.RegisterEndpoints = true
	model.Service.Listen = listen
	if opt.tls {
		model.Service.TLS = &tls.Config{}
		if opt.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(opt.tlsCert, opt.tlsKey)
			if err != nil {
				return err
			}
			model.Service.TLS.Certificates = []tls.Certificate{cert}
		}
	}

	// /debug/vars: expvar's handler lives on http.DefaultServeMux.
	expvar.Publish("vcsim", expvar.Func(func() any {
		counts := model.Count()
		return map[string]any{"registry": model.Service.Context.Map, "model": &counts}
	}))
	model.Service.ServeMux = http.DefaultServeMux

	server := model.Service.NewServer()
	defer server.Close()

	if opt.tunnel >= 0 {
		server.Tunnel = opt.tunnel
		if err := server.StartTunnel(); err != nil {
			return err
		}
	}

	if err := announce(opt.envOut, server.URL); err != nil {
		return err
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	if opt.stdinExit {
		fmt.Println("Press any key to exit")
		go func() {
			_, _ = os.Stdin.Read(make([]byte, 1))
			stop <- syscall.SIGTERM
		}()
	}
	<-stop
	return nil
}

// announce writes the GOVC_URL line that callers use to discover the chosen port.
func announce(dest string, u *url.URL) error {
	line := fmt.Sprintf("export GOVC_URL=%s GOVC_SIM_PID=%d\n", u, os.Getpid())
	if dest == "-" {
		_, err := io.WriteString(os.Stdout, line)
		return err
	}
	f, err := os.OpenFile(dest, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func parseMethodDelay(spec string) (map[string]int, error) {
	delays := map[string]int{}
	for _, item := range strings.Split(spec, ",") {
		name, ms, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("-method-delay: %q is not of the form Method:milliseconds", item)
		}
		n, err := strconv.Atoi(ms)
		if err != nil {
			return nil, fmt.Errorf("-method-delay: %q: %w", item, err)
		}
		delays[name] = n
	}
	return delays, nil
}

// pointHostTemplateAt makes the simulated ESX hosts report the simulator's own address
// as their management address (and port, unless it is chosen at start-up).
func pointHostTemplateAt(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-l %q: %w", listen, err)
	}
	esx.HostSystem.Summary.ManagementServerIp = host
	if port != "0" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return fmt.Errorf("-l %q: %w", listen, err)
		}
		esx.HostSystem.Summary.Config.Port = int32(p)
	}

	cfg := &esx.HostConfigInfo
	var nics [][]types.HostVirtualNic
	if cfg.Network != nil {
		nics = append(nics, cfg.Network.Vnic)
	}
	if cfg.Vmotion != nil && cfg.Vmotion.NetConfig != nil {
		nics = append(nics, cfg.Vmotion.NetConfig.CandidateVnic)
	}
	if cfg.VirtualNicManagerInfo != nil {
		for _, nc := range cfg.VirtualNicManagerInfo.NetConfig {
			nics = append(nics, nc.CandidateVnic)
		}
	}
	for _, list := range nics {
		for i := range list { // the slices share their arrays with the template
			if list[i].Spec.Ip != nil {
				list[i].Spec.Ip.IpAddress = host
			}
		}
	}
	return nil
}

// printVersion reports the govmomi library version compiled in (from the module build
// info, so it needs no linker flags) and the Go version.
func printVersion(w io.Writer) {
	version := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == govmomiModule {
				version = dep.Version
				if dep.Replace != nil {
					version = dep.Replace.Version
				}
			}
		}
	}
	fmt.Fprintf(w, "vcsim (vmi launcher) govmomi %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
