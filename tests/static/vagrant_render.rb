# Renders the Vagrantfile without Vagrant: a stand-in for the few parts of Vagrant it uses
# (Vagrant.configure, Vagrant.require_version, Vagrant::VERSION, Vagrant::Errors::VagrantError)
# records every setting, call and block, and this prints the result as JSON. The environment
# picks the case: PODPATH_TEST_VAGRANT_VERSION (the Vagrant version to pretend), PODPATH_ARCH,
# PODPATH_PROVISIONER, VAGRANT_DEFAULT_PROVIDER, PATH (a stand-in VBoxManage), ARGV after the
# path of the Vagrantfile (what `vagrant` would have been given).
#
#   ruby vagrant_render.rb VAGRANTFILE [vagrant arguments...]
#
# With PODPATH_TEST_EVAL set, that Ruby is evaluated after the Vagrantfile and its value
# printed instead (the tests drive the Vagrantfile's trigger helpers with stand-in machines).
# A PodpathError (or Vagrant's version error) is printed as {"error": message}, exit 3.
require "json"

module Vagrant
  VERSION = ENV.fetch("PODPATH_TEST_VAGRANT_VERSION", "2.4.9")
  REQUIREMENTS = []
  CONFIGS = []

  module Errors
    class VagrantError < StandardError
      def initialize(*)
        super(error_message)
      end

      def error_message
        "No error message"
      end
    end

    class VagrantVersionBad < VagrantError
      def initialize(requirements)
        @requirements = requirements
        super()
      end

      def error_message
        "Vagrant #{VERSION} does not satisfy #{@requirements.join(', ')}"
      end
    end
  end

  def self.require_version(*requirements)
    REQUIREMENTS.concat(requirements)
    return if Gem::Requirement.new(*requirements).satisfied_by?(Gem::Version.new(VERSION))

    raise Errors::VagrantVersionBad, requirements
  end

  def self.configure(version)
    root = Recorder.new
    yield root
    CONFIGS << { "version" => version, "config" => root }
  end
end

# Records what the Vagrantfile does with a config object: `x = v` as a setting, `x` as a
# namespace (config.vm, config.ssh, ...), anything called with arguments or a block as a call,
# in order, with the recorders handed to its block. Blocks given to `ruby` are kept to run.
class Recorder
  attr_reader :settings, :calls

  def initialize
    @settings = {}
    @calls = []
  end

  def respond_to_missing?(*)
    true
  end

  def method_missing(name, *args, **kwargs, &block)
    key = name.to_s
    return @settings[key.chomp("=")] = args.first if key.end_with?("=")
    return @settings[key] if args.empty? && kwargs.empty? && block.nil? && @settings.key?(key)
    return (@settings[key] = Recorder.new) if args.empty? && kwargs.empty? && block.nil?

    call = { "method" => key, "args" => args, "kwargs" => kwargs, "blocks" => [] }
    if block && key == "ruby"
      call["ruby"] = block
    elsif block
      call["blocks"] = Array.new([block.arity.abs, 1].max) { Recorder.new }
      block.call(*call["blocks"])
    end
    @calls << call
    nil
  end

  def to_json_data
    { "settings" => Recorder.plain(@settings), "calls" => @calls.map { |call| Recorder.plain(call.reject { |k, _| k == "ruby" }) } }
  end

  def self.plain(value)
    case value
    when Recorder then value.to_json_data
    when Hash then value.to_h { |k, v| [k.to_s, plain(v)] }
    when Array then value.map { |v| plain(v) }
    when Symbol then ":#{value}"
    else value
    end
  end
end

vagrantfile = ARGV.shift
begin
  load vagrantfile
rescue Vagrant::Errors::VagrantError => e
  puts JSON.generate({ "error" => e.message })
  exit 3
end

if ENV.key?("PODPATH_TEST_EVAL")
  begin
    result = eval(ENV["PODPATH_TEST_EVAL"]) # rubocop:disable Security/Eval
    puts JSON.generate({ "value" => Recorder.plain(result) })
  rescue Vagrant::Errors::VagrantError => e
    puts JSON.generate({ "error" => e.message })
    exit 3
  end
  exit 0
end

puts JSON.generate({
  "requirements" => Vagrant::REQUIREMENTS,
  "env" => { "VAGRANT_NO_PARALLEL" => ENV["VAGRANT_NO_PARALLEL"] },
  "configs" => Vagrant::CONFIGS.map { |c| { "version" => c["version"], "config" => c["config"].to_json_data } },
})
