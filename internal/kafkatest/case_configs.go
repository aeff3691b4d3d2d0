package kafkatest

import (
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
)

// caseAlterConfigs: kafka-python and confluent (librdkafka) change a
// topic's retention and segment size with AlterConfigs; DescribeConfigs,
// by the same client and by kadm, then shows the new values. kafka-python
// deletes a consumer group with DeleteGroups, which forgets its offsets.
func caseAlterConfigs(e *env) {
	want := map[string]string{"retention.ms": "3600000", "segment.bytes": "1048576"}
	for _, c := range []struct{ name, script string }{
		{"kafka-python", kafkaPythonScript}, {"confluent", confluentScript},
	} {
		e.run(c.name, func(e *env) {
			topic := e.name(c.name)
			e.createTopic(topic, 1)
			args := []string{"configs", "--topic", topic}
			for k, v := range want {
				args = append(args, "--set", k+"="+v)
			}
			r := e.py(c.script, "", args...)
			if r.err != nil {
				e.t.Fatalf("%s alter configs: %s", c.name, r.failure())
			}
			var described map[string]*string
			for _, l := range e.parseLines(c.name+" configs", r.stdout) {
				if l.Configs != nil {
					described = l.Configs
				}
			}
			rcs, err := e.franz.adm.DescribeTopicConfigs(e.ctx(), topic)
			if err != nil {
				e.t.Fatal(err)
			}
			byKadm := map[string]string{}
			if rc, err := rcs.On(topic, nil); err == nil {
				for _, cf := range rc.Configs {
					byKadm[cf.Key] = cf.MaybeValue()
				}
			}
			for k, v := range want {
				if got := described[k]; got == nil || *got != v {
					e.t.Errorf("%s: after AlterConfigs %s=%s its DescribeConfigs shows %v", c.name, k, v, got)
				}
				if byKadm[k] != v {
					e.t.Errorf("%s: after AlterConfigs %s=%s kadm's DescribeConfigs shows %q", c.name, k, v, byKadm[k])
				}
			}
		})
	}
	e.run("kafka-python-delete-groups", func(e *env) {
		topic, group := e.name("dg"), e.name("dg", "group")
		e.createTopic(topic, 1)
		os := kadm.Offsets{}
		os.Add(kadm.Offset{Topic: topic, Partition: 0, At: 0, LeaderEpoch: -1})
		if res, err := e.franz.adm.CommitOffsets(e.ctx(), group, os); err != nil || res.Error() != nil {
			e.t.Fatalf("commit an offset for group %s: %v %v", group, err, res.Error())
		}
		r := e.py(kafkaPythonScript, "", "delete-groups", "--group", group)
		if r.err != nil {
			e.t.Fatalf("kafka-python delete-groups: %s", r.failure())
		}
		for _, l := range e.parseLines("kafka-python delete-groups", r.stdout) {
			if l.Group != nil && l.Error != nil {
				e.t.Errorf("kafka-python delete-groups %s: %s", *l.Group, *l.Error)
			}
		}
		f, err := e.franz.adm.FetchOffsets(e.ctx(), group)
		if err != nil && !strings.Contains(err.Error(), "GROUP_ID_NOT_FOUND") {
			e.t.Fatal(err)
		}
		if o, ok := f.Lookup(topic, 0); ok && o.At >= 0 {
			e.t.Errorf("after DeleteGroups, group %s still has offset %d", group, o.At)
		}
	})
}
